"""ImageVAE: a convolutional VAE for 1- or 3-channel images of any size.

The Bernoulli decoder (loss "bce") treats pixels in [0, 1] as probabilities: log p(x|z) = -BCE(logits, x)
summed over pixels; the sigmoid is folded into the BCE for stability. The Gaussian decoder (loss "mse")
uses a fixed pixel standard deviation sigma: log p(x|z) = -sum (x - mu)^2 / (2 sigma^2) - D/2 log(2 pi sigma^2),
a density of continuous data, so its nats can be negative.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F

from ..distributions import DiagonalGaussian
from ..errors import VaekitError
from ..nn.image import ConvDecoder, ConvEncoder
from .base import VAE


@dataclasses.dataclass(frozen=True)
class ImageVAEConfig:
    in_channels: int = 1
    height: int = 28
    width: int = 28
    channels: tuple[int, ...] = (32, 64)
    convs_per_level: int = 1
    hidden_dims: tuple[int, ...] = (16,)
    decoder_hidden_dims: tuple[int, ...] = ()
    latent_dim: int = 2
    activation: Literal["relu", "elu", "silu"] = "relu"
    loss: Literal["bce", "mse"] = "bce"
    mse_sigma: float = 0.1

    def __post_init__(self):
        if self.latent_dim <= 0:
            raise VaekitError(f"latent dimension must be positive, got {self.latent_dim}")
        if self.in_channels not in (1, 3):
            raise VaekitError(f"images must have 1 or 3 channels, got {self.in_channels}")
        if self.height < 1 or self.width < 1:
            raise VaekitError(f"image size must be positive, got {self.height}x{self.width}")
        if not self.channels or min(self.channels) < 1:
            raise VaekitError("channels must list at least one positive width")
        if self.convs_per_level < 1:
            raise VaekitError("convs_per_level must be at least 1")
        if self.mse_sigma <= 0:
            raise VaekitError("mse_sigma must be positive")


PRESETS: dict[str, dict] = {
    # The design documents' network, exactly (see ConvDecoder).
    "seed": dict(channels=(32, 64), convs_per_level=1, hidden_dims=(16,), decoder_hidden_dims=(),
                 latent_dim=2, activation="relu"),
    # Chosen for quality at a CPU-friendly cost: wider, a 3x3 conv after each downsampling, a 512-unit
    # dense layer each side and a 32-dimensional latent.
    "default": dict(channels=(32, 64), convs_per_level=2, hidden_dims=(512,), decoder_hidden_dims=(512,),
                    latent_dim=32, activation="elu"),
}


class ImageVAE(VAE):
    """Shape letters: b batch, k importance samples, c channels, h height, w width, d latent."""

    model_type = "image_vae"
    config_class = ImageVAEConfig

    def __init__(self, config: ImageVAEConfig):
        super().__init__(config)
        arch = dict(height=config.height, width=config.width, channels=config.channels,
                    latent_dim=config.latent_dim, activation=config.activation,
                    convs_per_level=config.convs_per_level)
        self.encoder = ConvEncoder(config.in_channels, hidden_dims=config.hidden_dims, **arch)
        self.decoder = ConvDecoder(config.in_channels, hidden_dims=config.decoder_hidden_dims, **arch)
        # oneDNN's CPU kernels are much faster on channels-last tensors: 1.6x for a training step of the seed
        # network in bf16, 3x for importance-weighted evaluation (benchmarks/bench_image.py)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "ImageVAE":
        if preset not in PRESETS:
            raise VaekitError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        return cls(ImageVAEConfig(**{**PRESETS[preset], **overrides}))

    def _check(self, x: torch.Tensor) -> None:
        want = (self.config.in_channels, self.config.height, self.config.width)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise VaekitError(f"images of shape {tuple(x.shape[1:])} do not fit this model, which takes {want} (c, h, w)")

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """x (b, c, h, w) in [0, 1] -> q(z|x)."""
        self._check(x)
        mean, logvar = self.encoder(x.contiguous(memory_format=torch.channels_last))
        return DiagonalGaussian(mean, logvar)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)  # (..., c, h, w)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's mean image in [0, 1], (..., c, h, w)."""
        return torch.sigmoid(self.decoder(z).float())

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z): x (b, c, h, w), z (..., b, d) -> (..., b), in fp32."""
        logits = self.decoder(z).float()  # (..., b, c, h, w)
        target = x.float().expand_as(logits)
        if self.config.loss == "bce":
            per_pixel = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            sigma = self.config.mse_sigma
            per_pixel = -(torch.sigmoid(logits) - target).pow(2) / (2 * sigma**2) - 0.5 * math.log(2 * math.pi * sigma**2)
        return per_pixel.flatten(-3).sum(-1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean of each image."""
        return self.decode(self.encode(x).mean)

    def log_examples(self, monitor, batch: torch.Tensor, step: int, generator: torch.Generator) -> None:
        """Each epoch: 64 prior samples, and up to 32 validation images, each beside its reconstruction."""
        from ..viz import auto_scale, image_grid

        scale = auto_scale(self.config.height)
        samples = self.sample(64, generator=generator)
        monitor.image("samples", image_grid(samples, nrow=8, scale=scale), step, save_as="samples.png")
        originals = batch[:32].float()
        recon = self.reconstruct(originals)
        pairs = torch.stack([originals, recon], dim=1).flatten(0, 1)  # (2b, c, h, w): each image, then its reconstruction
        monitor.image("reconstructions", image_grid(pairs, nrow=16, scale=scale), step, save_as="reconstructions.png")
