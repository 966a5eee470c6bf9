"""Run folders: every file name a run folder can hold, the one writer of its config.json, the guard against
overwriting one, the lock held while a trainer writes into it, and the clean-up of what vaekit wrote.

A leaf module (it imports no model code), so that models, trainers, the CLI and the server all take the
names from here. Loading a run's model is ``vaekit.models.load``.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path

from . import distributed
from .config import read_json, write_json
from .errors import VaekitError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
RESUME_NAME = "resume.pt"
METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
PLOTS_DIR = "plots"
SAMPLES_NAME = "samples.txt"
TOKENIZER_NAME = "tokenizer.json"
ENCODER_TOKENIZER_NAME = "encoder_tokenizer.json"
TOKENS_DIR = "data"
VECTORS_NAME = "word_vectors.safetensors"
WORDS_NAME = "word_vectors.json"
CALIBRATION_NAME = "anomaly.json"
EVALUATION_NAME = "evaluation.json"
EVALUATION_MD_NAME = "evaluation.md"
REPORT_NAME = "report.html"
LOCK_NAME = ".vaekit.lock"

# everything a run folder can hold that vaekit wrote: --overwrite removes these, and nothing else
RUN_FILES = (CONFIG_NAME, WEIGHTS_NAME, RESUME_NAME, METRICS_NAME, TENSORBOARD_DIR, PLOTS_DIR, SAMPLES_NAME,
             TOKENIZER_NAME, ENCODER_TOKENIZER_NAME, TOKENS_DIR, VECTORS_NAME, WORDS_NAME, CALIBRATION_NAME,
             EVALUATION_NAME, EVALUATION_MD_NAME, REPORT_NAME)


def run_config(path: str | Path) -> dict:
    return read_json(Path(path) / CONFIG_NAME)


def update_config(folder: str | Path, sections: dict) -> None:
    """The one writer of config.json: ``sections`` replace those of the same name, the others are kept
    (the data step writes "data", the trainer "model" and "training", save_pretrained "model_type"/"model")."""
    path = Path(folder) / CONFIG_NAME
    existing = read_json(path) if path.is_file() else {}
    write_json(path, {**sections, **{k: v for k, v in existing.items() if k not in sections}})


def _has_run(out: Path) -> bool:
    return out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir())


def prepare_run_dir(out: str | Path, overwrite: bool, resume: bool) -> Path:
    """Check that ``out`` may be written. Nothing is touched here: the caller clears it (``clear_run_dir``)
    only once the data and the flags have been validated."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaekitError(f"--out {out}: exists and is not a folder")
    if resume:
        if not (out / CONFIG_NAME).is_file():
            raise VaekitError(f"--out {out}: no run to resume (config.json is missing)")
    elif _has_run(out) and not overwrite:
        raise VaekitError(f"--out {out}: folder exists and is not empty; pass --resume to continue it or --overwrite to replace it")
    return out


def data_of_resumed_run(given, saved: str | None, out: Path):
    """What a resumed run trains on: its own data. None takes the path from config.json; the same path is
    fine; another path is refused (config.json would name data the model was not trained on)."""
    if given is None:
        return saved
    if not isinstance(given, (str, os.PathLike)):
        return given  # a dataset object from Python: the caller's to choose
    if saved is None or Path(given).resolve() != Path(saved).resolve():
        raise VaekitError(f"--data {given}: --resume continues the run on its own data ({saved}, named in "
                          f"{Path(out) / CONFIG_NAME}); leave --data out, or start a new run with another --out")
    return given


def _stale_temporaries(out: Path) -> list[Path]:
    """What a killed process left: atomic writes' ``.NAME.XXXX.tmp`` files in the folder (see config.atomic_path)
    and the text data step's ``.OUT.tokens.XXXX/`` folders beside it. Only called under the run's lock, so no
    live writer owns them."""
    found = list(out.glob(".*.tmp")) if out.is_dir() else []
    parent = out.resolve().parent
    return found + (list(parent.glob(f".{out.name}.tokens.*")) if parent.is_dir() else [])


def remove_stale_temporaries(out: str | Path) -> None:
    for path in _stale_temporaries(Path(out)):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()


def clear_run_dir(out: str | Path) -> None:
    """Remove what an earlier run wrote (only vaekit's own files), then make the folder."""
    out = Path(out)
    for name in RUN_FILES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _alive(pid: int, host: str) -> bool:
    if host != socket.gethostname():
        return True  # another machine's process cannot be checked from here: never take its lock
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_owner(path: Path) -> tuple[int, str] | None:
    try:
        pid, _, host = path.read_text(encoding="utf-8").strip().partition(" ")
        return int(pid), host
    except (OSError, ValueError):
        return None


class TrainingLock:
    """Held by the one process that trains into ``out``: a second trainer fails in one line naming the
    process that holds it; a lock left by a killed process (its pid gone on this machine) is taken over.
    ``acquire`` makes the folder if needed; ``release`` removes it again if the run left it empty."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.made = False
        self.mine = (os.getpid(), socket.gethostname())

    def acquire(self) -> None:
        self.made = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = _lock_owner(self.path)
                if owner is not None and _alive(*owner):
                    raise VaekitError(f"--out {self.out}: another vaekit process (pid {owner[0]} on {owner[1]}) is "
                                      f"training into this folder; wait for it to end, or remove {self.path} if it "
                                      "is gone") from None
                with contextlib.suppress(FileNotFoundError):  # stale (or half-written): take it over
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{self.mine[0]} {self.mine[1]}\n")
            remove_stale_temporaries(self.out)  # no live writer owns them now
            return
        raise VaekitError(f"--out {self.out}: could not take the training lock {self.path}")

    def release(self) -> None:
        if _lock_owner(self.path) == self.mine:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self.made:
            with contextlib.suppress(OSError):
                self.out.rmdir()  # only if empty: a run that failed before writing anything leaves nothing


class _Setup:
    def __init__(self, out: Path):
        self.out, self.started = out, False

    def start(self) -> None:
        """Everything was validated: clear what an earlier run wrote, and own the folder from here on."""
        clear_run_dir(self.out)
        self.started = True


@contextlib.contextmanager
def new_run(out: str | Path):
    """Around a new run's setup and training. The setup calls ``start()`` once it has validated everything;
    if the run then fails before its first checkpoint (so nothing in the folder could be resumed or used),
    what it wrote is removed rather than left to confuse a retry. Before ``start()`` nothing is touched."""
    setup = _Setup(Path(out))
    try:
        yield setup
    except BaseException:
        if setup.started and not (setup.out / RESUME_NAME).exists() and not (setup.out / WEIGHTS_NAME).exists():
            with contextlib.suppress(OSError):
                clear_run_dir(setup.out)
        raise


@contextlib.contextmanager
def training_folder(out: str | Path):
    """What every trainer holds around its run: the folder's lock (taken by rank 0, its error seen by every
    rank) and ``new_run``'s clean-up, yielding the setup whose ``start()`` clears the folder."""
    lock = TrainingLock(out)
    distributed.on_main(lock.acquire)
    try:
        with new_run(out) as setup:
            yield setup
    finally:
        if distributed.is_main():
            lock.release()
