"""vaekit: variational autoencoders for your own images and texts.

    import vaekit
    model = vaekit.load("runs/mnist")        # eval mode, from config.json + model.safetensors
    posterior = model.encode(x)              # DiagonalGaussian: .sample(), .mode(), .kl()
    images = model.decode(posterior.mode())
"""
from .config import TrainConfig
from .distributions import DiagonalGaussian
from .errors import NonFiniteLossError, VaekitError
from .models import ImageVAE, ImageVAEConfig, TextVAE, TextVAEConfig, VAE
from .models import load
from .train import Trainer

__version__ = "0.1.0"

__all__ = ["DiagonalGaussian", "ImageVAE", "ImageVAEConfig", "NonFiniteLossError", "TextVAE", "TextVAEConfig",
           "TrainConfig", "Trainer", "VAE", "VaekitError", "load", "__version__"]
