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

from ..distributions import DiagonalGaussian, draw
from ..errors import VaekitError
from ..data.images import ImageBatch, pixels
from ..nn.image import ConvDecoder, ConvEncoder
from .base import VAE, generator_for


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
    # a conditional VAE (Sohn et al. 2015) on these class labels: one-hot c into the encoder and beside z
    # for the decoder; empty for an unconditional model
    label_names: tuple[str, ...] = ()

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

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
        if len(self.label_names) == 1 or len(set(self.label_names)) != len(self.label_names):
            raise VaekitError("a conditional model needs at least two distinct labels")


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
    modality = "image"
    config_class = ImageVAEConfig

    def __init__(self, config: ImageVAEConfig):
        super().__init__(config)
        arch = dict(height=config.height, width=config.width, channels=config.channels,
                    latent_dim=config.latent_dim, activation=config.activation,
                    convs_per_level=config.convs_per_level)
        arch["cond_dim"] = config.num_labels
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

    # --- conditions (a conditional VAE when config.label_names is set) ---------------------------
    @property
    def conditional(self) -> bool:
        return self.config.num_labels > 0

    @property
    def labelled(self) -> bool:
        return self.conditional

    def label_index(self, label: str | int) -> int:
        """The index of a label name; an unknown one is an error that lists the known ones."""
        names = self.config.label_names
        if not names:
            raise VaekitError("--label: this model was trained without labels; train it with --conditional on "
                              "labelled images")
        if str(label) not in names:
            raise VaekitError(f"label {label!r}: unknown; this model knows {', '.join(names)}")
        return names.index(str(label))

    def labels_for(self, label: str | None, n: int) -> torch.Tensor | None:
        """Label indices for n generated images: all ``label``, or (None) the labels in equal consecutive
        blocks, so a grid shows the classes in order. None for an unconditional model."""
        if not self.conditional:
            if label is not None:
                self.label_index(label)  # names the problem
            return None
        if label is not None:
            return torch.full((n,), self.label_index(label), dtype=torch.long, device=self.device)
        return torch.arange(n, device=self.device) * self.config.num_labels // n

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), self.config.num_labels).float()

    def _condition(self, x) -> torch.Tensor | None:
        """The one-hot condition of a batch, or None for an unconditional model (whose labels are ignored)."""
        if not self.conditional:
            return None
        if not isinstance(x, ImageBatch):
            raise VaekitError("this conditional model needs each image's class label (the data has none)")
        return self.one_hot(x.labels)

    def decoder_input(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """[z; c] for a conditional decoder: c (b, C) is broadcast over z's leading sample dimensions."""
        if c is None:
            if self.conditional:
                raise VaekitError("this conditional model needs a label to decode (--label)")
            return z
        return torch.cat([z, c.to(z.device, z.dtype).expand(*z.shape[:-1], c.shape[-1])], dim=-1)

    def encode(self, x) -> DiagonalGaussian:
        """x (b, c, h, w) in [0, 1], or an ImageBatch with labels -> q(z|x) (q(z|x, c) when conditional)."""
        images = pixels(x).to(self.device)  # inputs follow the weights (a no-op in training, already there)
        self._check(images)
        c = self._condition(x)
        mean, logvar = self.encoder(images.contiguous(memory_format=torch.channels_last),
                                    None if c is None else c.to(images.device))
        return DiagonalGaussian(mean, logvar)

    def decode_logits(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.decoder(self.decoder_input(z, c))  # (..., c, h, w)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's mean image in [0, 1], (..., c, h, w); a conditional model takes label indices (b,)."""
        c = None if labels is None else self.one_hot(labels)
        return torch.sigmoid(self.decode_logits(z, c).float())

    def decode_as(self, z: torch.Tensor, label: str | None = None) -> torch.Tensor:
        """Decode codes z (n, d) as the class ``label``; a conditional model given none uses its first label
        (an unconditional model refuses a label, naming the problem)."""
        if self.conditional and label is None:
            label = self.config.label_names[0]
        return self.decode(z, self.labels_for(label, len(z)))  # decoder_input moves c to z's device

    def log_likelihood(self, x, z: torch.Tensor) -> torch.Tensor:
        """log p(x|z) (p(x|z, c) when conditional): x (b, c, h, w), z (..., b, d) -> (..., b), in fp32."""
        logits = self.decode_logits(z, self._condition(x)).float()  # (..., b, c, h, w)
        target = pixels(x).to(logits.device, torch.float32).expand_as(logits)
        if self.config.loss == "bce":
            per_pixel = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            sigma = self.config.mse_sigma
            per_pixel = -(torch.sigmoid(logits) - target).pow(2) / (2 * sigma**2) - 0.5 * math.log(2 * math.pi * sigma**2)
        return per_pixel.flatten(-3).sum(-1)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, label: str | None = None) -> torch.Tensor:
        """Decode n prior draws, scaled by ``temperature``: images (n, c, h, w) in [0, 1]. A conditional model
        draws them all with ``label``, or, without one, the labels in equal consecutive blocks."""
        labels = self.labels_for(label, n)
        z = temperature * draw((n, self.latent_dim), generator_for(seed, generator), self.device)
        return self.decode(z, labels)  # both on the model's device

    @torch.no_grad()
    def reconstruct(self, x, label: str | None = None) -> torch.Tensor:
        """Decode the posterior mean of each image. With ``label`` a conditional model redraws each image as
        that class, keeping its code (what the class does not explain: style, slant, thickness)."""
        code = self.encode(x).mean
        if not self.conditional:
            if label is not None:
                self.label_index(label)
            return self.decode(code)
        labels = x.labels if label is None else self.labels_for(label, len(code))
        return self.decode(code, labels.to(code.device))

    @torch.no_grad()
    def interpolate(self, a, b, steps: int = 10) -> torch.Tensor:
        """Decode ``steps`` points on the straight line between the posterior means of a and b; a conditional
        model also moves its condition from a's one-hot label to b's."""
        za, zb = self.encode(a).mean, self.encode(b).mean  # (1, d) each
        t = torch.linspace(0, 1, steps, device=za.device)[:, None]
        z = (1 - t) * za + t * zb
        if not self.conditional:
            return self.decode(z)
        ca, cb = self._condition(a).to(z.device), self._condition(b).to(z.device)
        return torch.sigmoid(self.decode_logits(z, (1 - t) * ca + t * cb).float())

    def log_examples(self, monitor, batch: torch.Tensor, step: int, generator: torch.Generator) -> None:
        """Each epoch: 64 prior samples, and up to 32 validation images, each beside its reconstruction."""
        from ..viz import auto_scale, image_grid

        scale = auto_scale(self.config.height)
        samples = self.sample(64, generator=generator)
        monitor.image("samples", image_grid(samples, nrow=8, scale=scale), step, save_as="samples.png")
        originals = batch[:32].float()
        recon = self.reconstruct(originals)
        pairs = torch.stack([pixels(originals).to(recon.device), recon], dim=1).flatten(0, 1)  # (2b, c, h, w): each image, then its reconstruction
        monitor.image("reconstructions", image_grid(pairs, nrow=16, scale=scale), step, save_as="reconstructions.png")
