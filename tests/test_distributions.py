import math

import torch

from vaekit import DiagonalGaussian
from vaekit.distributions import LOGVAR_MAX, LOGVAR_MIN, standard_normal_log_prob
from vaekit.objectives import iw_log_likelihood, kl_term, kl_weight, mutual_information
from vaekit.config import TrainConfig


def test_closed_form_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 3, generator=g)
    logvar = torch.randn(4, 3, generator=g) * 0.5
    q = DiagonalGaussian(mean, logvar)
    z = q.sample_k(200_000, generator=g)  # (k, b, d)
    monte_carlo = (q.log_prob(z) - standard_normal_log_prob(z)).mean(0)  # (b,)
    torch.testing.assert_close(q.kl().sum(-1), monte_carlo, atol=0.02, rtol=0.01)


def test_log_prob_matches_torch_normal():
    mean, logvar = torch.randn(5, 2), torch.randn(5, 2)
    q = DiagonalGaussian(mean, logvar)
    z = torch.randn(5, 2)
    ref = torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(q.log_prob(z), ref)


def test_reparameterized_sample_carries_gradients_and_statistics():
    mean = torch.full((1, 2), 3.0, requires_grad=True)
    logvar = torch.zeros(1, 2, requires_grad=True)
    q = DiagonalGaussian(mean, logvar)
    z = q.sample_k(50_000, generator=torch.Generator().manual_seed(1))
    assert abs(z.mean().item() - 3.0) < 0.02 and abs(z.std().item() - 1.0) < 0.02
    z.sum().backward()
    assert mean.grad is not None and logvar.grad is not None
    assert q.mode() is q.mean


def test_logvar_is_clamped_so_kl_stays_finite():
    q = DiagonalGaussian(torch.zeros(1, 2), torch.tensor([[1e4, -1e4]]))
    assert q.logvar.min() == LOGVAR_MIN and q.logvar.max() == LOGVAR_MAX
    assert torch.isfinite(q.kl()).all()


def test_iw_bound_of_a_gaussian_model_recovers_exact_likelihood():
    # p(z) = N(0, 1), p(x|z) = N(z, 1) => p(x) = N(0, 2). With the exact posterior N(x/2, 1/2) every
    # importance weight equals p(x), so the bound is exact for any k.
    x = torch.tensor([0.3, -1.2])
    q = DiagonalGaussian((x / 2)[:, None], torch.full((2, 1), math.log(0.5)))
    z = q.sample_k(7)
    log_px_z = -0.5 * (math.log(2 * math.pi) + (x[None, :] - z[..., 0]) ** 2)
    exact = -0.5 * (math.log(2 * math.pi * 2) + x**2 / 2)
    torch.testing.assert_close(iw_log_likelihood(log_px_z, z, q), exact, atol=1e-5, rtol=1e-5)


def test_free_bits_stop_penalising_small_kl():
    kl_dims = torch.tensor([[0.01, 2.0], [0.03, 2.0]])
    assert torch.allclose(kl_term(kl_dims, 0.0), kl_dims.sum(-1))
    assert torch.allclose(kl_term(kl_dims, 0.5), torch.tensor([2.5, 2.5]))


def test_kl_schedules():
    constant = TrainConfig(beta=0.5)
    assert kl_weight(0, constant, 100) == 0.5
    linear = TrainConfig(kl_schedule="linear", kl_warmup_steps=10)
    assert kl_weight(0, linear, 100) == 0 and kl_weight(5, linear, 100) == 0.5 and kl_weight(50, linear, 100) == 1
    logistic = TrainConfig(kl_schedule="logistic", kl_warmup_steps=100)
    assert kl_weight(0, logistic, 1000) < 0.01 and abs(kl_weight(50, logistic, 1000) - 0.5) < 1e-9
    assert kl_weight(100, logistic, 1000) > 0.99
    cyclical = TrainConfig(kl_schedule="cyclical", kl_cycles=2)
    weights = [kl_weight(s, cyclical, 100) for s in range(100)]
    assert weights[0] == 0 and weights[25] == 1 and weights[49] == 1 and weights[50] == 0 and weights[99] == 1


def test_mutual_information_is_zero_for_identical_posteriors_and_positive_for_distinct_ones():
    # a Monte Carlo estimate (one z per item), so zero only up to noise of about 1/sqrt(batch)
    same = DiagonalGaussian(torch.zeros(4096, 2), torch.zeros(4096, 2))
    assert abs(mutual_information(same, torch.Generator().manual_seed(0))) < 0.05
    spread = DiagonalGaussian(torch.randn(64, 2) * 5, torch.full((64, 2), -4.0))
    assert mutual_information(spread, torch.Generator().manual_seed(0)) > 2.0
