"""Frozen dataclass configs with a strict JSON round trip.

A run folder's ``config.json`` is the single source of truth: ``{"model_type": ..., "model": {...},
"training": {...}, "data": {...}}``. ``save_pretrained`` writes only ``model_type`` and ``model``.
Unknown or ill-typed fields are errors that name the field, so an edited config fails loudly.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import typing
from pathlib import Path
from typing import Any

from .errors import VaekitError


def choices(cls, field: str) -> list[str]:
    """The values a Literal-typed config field admits, in the order declared: the one source of a CLI choice list."""
    annotation = typing.get_type_hints(cls)[field]
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Union:  # Optional[Literal[...]]
        args = typing.get_args(next(a for a in args if a is not type(None)))
    return list(args)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is typing.Literal:
        if value not in args:
            raise VaekitError(f"{where} is {value!r}; expected one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise VaekitError(f"{where} is {value!r}; expected a list")
        return tuple(_coerce(v, args[0], where) for v in value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise VaekitError(f"{where} is {value!r}; expected true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise VaekitError(f"{where} is {value!r}; expected an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise VaekitError(f"{where} is {value!r}; expected a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise VaekitError(f"{where} is {value!r}; expected a string")
        return value
    return value


def from_dict(cls, data: dict, where: str = "config"):
    """Build dataclass ``cls`` from ``data``, rejecting unknown fields and wrong types."""
    if not isinstance(data, dict):
        raise VaekitError(f"{where} must be a JSON object")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise VaekitError(f"{where} has unknown field {unknown[0]!r}")
    kwargs = {k: _coerce(v, hints[k], f"{where} field {k!r}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise VaekitError(f"{where}: {exc}") from None


def to_dict(cfg) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once, at import: os.umask can only be read by setting it
FILE_MODE = 0o666 & ~UMASK  # what open() gives a new file
FOLDER_MODE = 0o777 & ~UMASK  # ... and mkdir a new folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """A temporary file's path in ``path``'s folder, renamed onto ``path`` when the block ends without an error
    and removed when it raises: a crash or Ctrl-C never leaves half a file. The file has the permissions that
    open() would give it (mkstemp makes 0600, which other users of a shared run folder could not read).
    ``suffix`` is for writers that infer a format from the name or append their own (numpy's .npz)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        # after the writer, since some (safetensors) replace the file they are given; best effort, as some mounts
        # (SMB, some FUSE file systems) refuse chmod, and a file there is still worth writing
        with contextlib.suppress(OSError):
            os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary file in the same folder and rename (see atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path: str | os.PathLike, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise VaekitError(f"{path}: file is missing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VaekitError(f"{path}: not valid JSON ({exc})") from None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained. Stored under ``"training"`` in a run's config.json."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: typing.Literal["adam", "adamw", "rmsprop"] = "adam"
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max global grad norm; 0 disables
    val_fraction: float = 0.1
    seed: int = 0
    precision: typing.Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    device: typing.Literal["auto", "cpu", "cuda", "mps"] = "auto"
    compile: bool = False  # torch.compile the model's networks
    early_stop: int = 0  # stop after this many epochs without a better validation loss; 0 disables
    # multiply the learning rate by lr_decay after lr_patience epochs without a better validation loss
    # (He et al. 2019 decay it when validation stalls); 1.0 disables
    lr_decay: float = 1.0
    lr_patience: int = 2
    # constant, or lr * f(progress) with progress the larger of step / (epochs * batches) and elapsed / max_minutes:
    # linear f = 1 - p, cosine f = (1 + cos(pi p)) / 2, wsd 1 then linear to 0 over the last 20%; see train.lr_factor
    lr_schedule: typing.Literal["constant", "linear", "cosine", "wsd"] = "constant"
    max_minutes: float = 0.0  # end the epoch in progress, validate and stop once training has run this long; 0 disables
    min_steps: int = 0  # the time budget never ends training before this many steps (a slow machine still learns)
    # KL weight: beta * schedule(step); see objectives.kl_weight
    beta: float = 1.0
    kl_schedule: typing.Literal["constant", "linear", "logistic", "cyclical"] = "constant"
    kl_warmup_steps: int = 0
    ae_warmup_steps: int = 0  # steps at KL weight 0 before the schedule (Li et al. 2019's autoencoder warm start)
    kl_cycles: int = 4
    free_bits: float = 0.0

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.lr > 0, "lr must be positive"),
            (0 <= self.val_fraction < 1, "val_fraction must be in [0, 1)"),
            (self.beta >= 0, "beta must be non-negative"),
            (self.free_bits >= 0, "free_bits must be non-negative"),
            (self.ae_warmup_steps >= 0, "ae_warmup_steps must be non-negative"),
            (self.early_stop >= 0, "early_stop must be non-negative"),
            (self.max_minutes >= 0, "max_minutes must be non-negative"),
            (self.min_steps >= 0, "min_steps must be non-negative"),
            (0 < self.lr_decay <= 1, "lr_decay must be in (0, 1]"),
            (self.lr_patience >= 0, "lr_patience must be non-negative"),
            (self.lr_schedule == "constant" or self.lr_decay == 1.0,
             "lr_decay (decay when validation stalls) works with lr_schedule constant, not with a schedule"),
        ]
        for ok, message in checks:
            if not ok:
                raise VaekitError(f"training config: {message}")
