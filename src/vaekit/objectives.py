"""ELBO pieces shared by every model: KL weight schedules, free bits, and the importance-weighted bound."""
from __future__ import annotations

import math

import torch

from .config import TrainConfig
from .distributions import DiagonalGaussian, standard_normal_log_prob


def kl_weight(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """The weight on the KL term at optimisation step ``step`` (0-based).

    - constant: beta.
    - linear: beta * min(1, step / warmup) (KL annealing, Bowman et al. 2016).
    - logistic: beta / (1 + exp(-k (step - warmup/2))) with k = 10 / warmup (Bowman et al. 2016).
    - cyclical: total steps split into ``kl_cycles`` cycles; in each, the weight rises linearly for the first
      half and stays at beta for the second (Fu et al. 2019, R = 0.5).
    With ``ae_warmup_steps`` the weight is 0 for those first steps (an autoencoder warm start, Li et al. 2019:
    the decoder learns to read z before the KL pulls q(z|x) to the prior) and the schedule starts after them.
    """
    if step < cfg.ae_warmup_steps:
        return 0.0
    step, total_steps = step - cfg.ae_warmup_steps, max(1, total_steps - cfg.ae_warmup_steps)
    beta = cfg.beta
    if cfg.kl_schedule == "constant":
        return beta
    if cfg.kl_schedule == "cyclical":
        period = max(1, math.ceil(total_steps / max(1, cfg.kl_cycles)))
        tau = (step % period) / period
        return beta * min(1.0, tau / 0.5)
    warmup = cfg.kl_warmup_steps if cfg.kl_warmup_steps > 0 else max(1, total_steps // 3)
    if cfg.kl_schedule == "linear":
        return beta * min(1.0, step / warmup)
    k = 10.0 / warmup
    return beta / (1.0 + math.exp(-k * (step - warmup / 2)))


def kl_term(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Per-item KL to optimise, (b,). With free bits (Kingma et al. 2016, eq. 15) each latent dimension's
    batch-mean KL below ``free_bits`` nats costs nothing, so the encoder is not pushed to collapse it."""
    if free_bits <= 0:
        return kl_per_dim.sum(-1)
    per_dim = kl_per_dim.mean(0)  # (d,)
    clamped = torch.clamp(per_dim, min=free_bits)
    # keep the per-item shape: every item carries the batch's clamped dimension KL
    return clamped.sum().expand(kl_per_dim.shape[0])


def iw_log_likelihood(log_px_given_z: torch.Tensor, z: torch.Tensor, posterior: DiagonalGaussian) -> torch.Tensor:
    """Importance-weighted estimate of log p(x) (Burda et al. 2016, eq. 8), per item.

    log p(x) >= log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x), z_i ~ q(z|x); tight as k grows.
    ``log_px_given_z`` is (k, b), ``z`` is (k, b, d). Returns (b,).
    """
    log_w = log_px_given_z + standard_normal_log_prob(z) - posterior.log_prob(z)
    k = log_w.shape[0]
    return torch.logsumexp(log_w, dim=0) - math.log(k)


def mutual_information(posterior: DiagonalGaussian, generator: torch.Generator | None = None) -> float:
    """I(x; z) under q (He et al. 2019, eq. 4): E_x E_q(z|x)[log q(z|x)] - E_q(z)[log q(z)].

    The aggregate posterior q(z) is approximated by the mixture of this batch's posteriors.
    """
    mean, logvar = posterior.mean, posterior.logvar  # (b, d)
    b, d = mean.shape
    neg_entropy = (-0.5 * d * math.log(2 * math.pi) - 0.5 * (1 + logvar).sum(-1)).mean()
    z = posterior.sample(generator)  # (b, d)
    # log q(z_i | x_j) for every pair: (b_i, b_j)
    dev = z[:, None, :] - mean[None, :, :]
    log_density = -0.5 * (dev.pow(2) / logvar.exp()[None]).sum(-1) - 0.5 * (d * math.log(2 * math.pi) + logvar.sum(-1))[None]
    log_qz = torch.logsumexp(log_density, dim=1) - math.log(b)
    return float(neg_entropy - log_qz.mean())
