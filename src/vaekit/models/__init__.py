"""Model classes and their registry: ``vaekit.load`` finds a run's class by config.json's ``model_type``, and
every caller (CLI, server, report, trainer) asks ``modality_of(model)`` rather than testing classes."""
from pathlib import Path

from ..config import read_json
from ..errors import VaekitError
from ..runs import CONFIG_NAME
from .base import VAE, LossOutput
from .image import ImageVAE, ImageVAEConfig
from .lm_text import LMTextVAE, LMTextVAEConfig
from .text import TextVAE, TextVAEConfig

MODEL_TYPES: dict[str, type[VAE]] = {}
MODALITIES = ("image", "text")


def register(cls: type[VAE]) -> type[VAE]:
    """Add a model class to the registry (usable as a class decorator); its contract tests then run on it."""
    if cls.modality not in MODALITIES:
        raise ValueError(f"{cls.__name__}.modality must be one of {MODALITIES}, got {cls.modality!r}")
    MODEL_TYPES[cls.model_type] = cls
    return cls


def load(path: str | Path, map_location: str = "cpu") -> VAE:
    """Load the model saved in a run folder (or a ``save_pretrained`` folder), in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise VaekitError(f"{path}: no such run folder")
    raw = read_json(path / CONFIG_NAME)
    model_type = raw.get("model_type") if isinstance(raw, dict) else None
    if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
        raise VaekitError(f"{path / CONFIG_NAME}: unknown model_type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[model_type].from_pretrained(path, map_location=map_location)


def modality_of(model: VAE) -> str:
    """"image" or "text": the one question callers ask about a model."""
    return MODEL_TYPES[model.model_type].modality


register(ImageVAE)
register(TextVAE)
register(LMTextVAE)

__all__ = ["VAE", "LossOutput", "ImageVAE", "ImageVAEConfig", "LMTextVAE", "LMTextVAEConfig", "TextVAE",
           "TextVAEConfig", "MODEL_TYPES",
           "MODALITIES", "load", "modality_of", "register"]
