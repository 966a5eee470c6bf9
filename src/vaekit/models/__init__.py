"""Model classes and the registry that ``vaekit.load`` dispatches on (config.json's ``model_type``)."""
from .base import VAE, LossOutput
from .image import ImageVAE, ImageVAEConfig
from .text import TextVAE, TextVAEConfig

MODEL_TYPES: dict[str, type[VAE]] = {ImageVAE.model_type: ImageVAE, TextVAE.model_type: TextVAE}

__all__ = ["VAE", "LossOutput", "ImageVAE", "ImageVAEConfig", "TextVAE", "TextVAEConfig", "MODEL_TYPES"]
