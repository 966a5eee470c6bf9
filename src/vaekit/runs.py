"""Run folders: load any saved model by its config.json, and guard a folder against being overwritten."""
from __future__ import annotations

import shutil
from pathlib import Path

from .config import read_json
from .errors import VaekitError
from .models import MODEL_TYPES
from .models.base import CONFIG_NAME, VAE

RUN_FILES = ("config.json", "model.safetensors", "resume.pt", "metrics.jsonl", "tensorboard", "plots",
             "word_vectors.safetensors", "word_vectors.json")


def load(path: str | Path, map_location: str = "cpu") -> VAE:
    """Load the model saved in a run folder (or a ``save_pretrained`` folder), in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise VaekitError(f"{path}: no such run folder")
    raw = read_json(path / CONFIG_NAME)
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if model_type not in MODEL_TYPES:
        raise VaekitError(f"{path / CONFIG_NAME}: unknown model_type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[model_type].from_pretrained(path, map_location=map_location)


def run_config(path: str | Path) -> dict:
    return read_json(Path(path) / CONFIG_NAME)


def prepare_run_dir(out: str | Path, overwrite: bool, resume: bool) -> Path:
    """Check that ``out`` may be written. Nothing is touched here: the caller clears it (``clear_run_dir``)
    only once the data and the flags have been validated."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise VaekitError(f"--out {out}: exists and is not a folder")
    has_run = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / CONFIG_NAME).is_file():
            raise VaekitError(f"--out {out}: no run to resume (config.json is missing)")
    elif has_run and not overwrite:
        raise VaekitError(f"--out {out}: folder exists and is not empty; pass --resume to continue it or --overwrite to replace it")
    return out


def clear_run_dir(out: Path) -> None:
    """Remove what an earlier run wrote (only vaekit's own files), then make the folder."""
    for name in RUN_FILES:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)
