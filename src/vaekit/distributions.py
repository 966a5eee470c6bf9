"""The diagonal Gaussian posterior q(z|x) = N(mu, diag(exp(logvar))).

Shapes: b batch, d latent dimension, k importance samples.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)
# exp(±10) keeps the variance in [4.5e-5, 2.2e4]: wide enough for any sane posterior, and it stops a
# single exploding logit from turning the KL or the reparameterised sample into inf.
LOGVAR_MIN, LOGVAR_MAX = -10.0, 10.0


def draw(shape, generator: torch.Generator | None = None, device: torch.device | str | None = None,
         dtype: torch.dtype | None = None, uniform: bool = False) -> torch.Tensor:
    """Standard normal draws (uniform in [0, 1) with ``uniform``) of ``shape`` on ``device`` (default: the
    generator's, else the CPU). A generator draws on its own device, so a CPU generator can drive a model on a
    GPU: it draws there and the draws are moved, and one seed gives the same draws whatever device the model is
    on. Without a generator they are drawn on ``device`` from its global generator."""
    where = generator.device if generator is not None else (device if device is not None else "cpu")
    x = (torch.rand if uniform else torch.randn)(shape, generator=generator, dtype=dtype, device=where)
    return x if device is None else x.to(device)


class DiagonalGaussian:
    """q(z|x) with mean ``mean`` (b, d) and log-variance ``logvar`` (b, d), both kept in fp32."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor):
        self.mean = mean.float()
        self.logvar = logvar.float().clamp(LOGVAR_MIN, LOGVAR_MAX)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """Reparameterization trick (Kingma & Welling 2014, sec. 2.4): z = mu + sigma * eps, eps ~ N(0, I)."""
        eps = draw(self.mean.shape, generator, self.mean.device, self.mean.dtype)
        return self.mean + temperature * self.std * eps

    rsample = sample

    def sample_k(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """k reparameterised samples per item, (k, b, d)."""
        eps = draw((k, *self.mean.shape), generator, self.mean.device, self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q(z|x) || N(0, I)) per latent dimension, (b, d).

        Closed form (Kingma & Welling 2014, appendix B): -1/2 * (1 + logvar - mu^2 - exp(logvar)).
        """
        return -0.5 * (1 + self.logvar - self.mean.pow(2) - self.logvar.exp())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over latent dimensions; z is (..., b, d), the result (..., b)."""
        return (-0.5 * (LOG_2PI + self.logvar + (z - self.mean).pow(2) / self.logvar.exp())).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return (-0.5 * (LOG_2PI + z.pow(2))).sum(-1)
