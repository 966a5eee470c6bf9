"""Model classes and the registry that ``vaekit.load`` dispatches on (config.json's ``model_type``)."""
from .base import VAE, LossOutput
from .image import ImageVAE, ImageVAEConfig

MODEL_TYPES: dict[str, type[VAE]] = {ImageVAE.model_type: ImageVAE}

__all__ = ["VAE", "LossOutput", "ImageVAE", "ImageVAEConfig", "MODEL_TYPES"]
