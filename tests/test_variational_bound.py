"""sdlib.diffusion.variational_bound against a brute-force computation on a one-pixel model whose every
expectation is computed by Gauss-Hermite quadrature instead of sampling."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from sdlib.diffusion import discretized_gaussian_log_likelihood, variational_bound
from sdlib.schedules import NoiseSchedule

T = 6
SCHEDULE = NoiseSchedule.linear(T, beta_start=0.01, beta_end=0.4)
X0 = 153 / 127.5 - 1          # the 8-bit pixel 153 in [-1, 1]


class TinyModel(nn.Module):
    """ε_θ(x, t) = a·x·t/T + b: linear in x, so each denoising KL is a quadratic in x_t."""

    def __init__(self, a=0.8, b=-0.1, max_t=T):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))
        self.b = nn.Parameter(torch.tensor(b))
        self.config = type("Config", (), {"max_t": max_t})()

    def forward(self, x, t, context=None, mask=None):
        return self.a * x * (t.float() / T).view(-1, 1, 1, 1) + self.b


def _phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def brute_force_bits(model, variance):
    """The expected negative ELBO of the pixel X0, every expectation over x_t by quadrature."""
    s, a, b = SCHEDULE, model.a.item(), model.b.item()
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    weights = weights / weights.sum()                      # E over N(0, 1)

    def mu_theta(xt, t):
        eps = a * xt * t / T + b
        return (xt - s.beta[t].item() / math.sqrt(1 - s.alpha_bar[t].item()) * eps) / math.sqrt(s.alpha[t].item())

    ab_T = s.alpha_bar[T].item()
    prior = 0.5 * ((1 - ab_T) + ab_T * X0 ** 2 - 1 - math.log(1 - ab_T))
    denoising = 0.0
    for t in range(2, T + 1):
        ab, ab_prev, beta = s.alpha_bar[t].item(), s.alpha_bar[t - 1].item(), s.beta[t].item()
        beta_tilde = (1 - ab_prev) / (1 - ab) * beta
        sigma2 = beta if variance == "beta" else beta_tilde
        for z, w in zip(nodes, weights):
            xt = math.sqrt(ab) * X0 + math.sqrt(1 - ab) * z
            mu_tilde = (math.sqrt(ab_prev) * beta / (1 - ab)) * X0 + (math.sqrt(s.alpha[t].item()) * (1 - ab_prev) / (1 - ab)) * xt
            kl = 0.5 * (math.log(sigma2 / beta_tilde) + beta_tilde / sigma2 - 1) + (mu_tilde - mu_theta(xt, t)) ** 2 / (2 * sigma2)
            denoising += w * kl
    reconstruction = 0.0
    std = math.sqrt(s.beta[1].item())
    for z, w in zip(nodes, weights):
        x1 = math.sqrt(s.alpha_bar[1].item()) * X0 + math.sqrt(1 - s.alpha_bar[1].item()) * z
        m = mu_theta(x1, 1)
        p = _phi((X0 + 1 / 255 - m) / std) - _phi((X0 - 1 / 255 - m) / std)
        reconstruction -= w * math.log(max(p, 1e-12))
    return (prior + denoising + reconstruction) / math.log(2), denoising / math.log(2)


@pytest.mark.parametrize("variance", ["beta", "beta_tilde"])
def test_every_t_matches_brute_force(variance):
    model = TinyModel()
    x0 = torch.full((20_000, 1, 1, 1), X0)
    got = variational_bound(model, SCHEDULE, x0, variance=variance, n_t=None, generator=torch.Generator().manual_seed(0))
    want, want_denoising = brute_force_bits(model, variance)
    assert abs(got.bits_per_dim - want) < 4 * got.standard_error, (got, want)
    assert got.standard_error < 0.02 * abs(want)           # a test that can fail: the estimate is tight
    assert got.prior + got.denoising + got.reconstruction == pytest.approx(got.bits_per_dim)


def test_sampled_t_is_unbiased():
    model = TinyModel()
    x0 = torch.full((20_000, 1, 1, 1), X0)
    got = variational_bound(model, SCHEDULE, x0, n_t=2, generator=torch.Generator().manual_seed(1))
    want, _ = brute_force_bits(model, "beta")
    assert abs(got.bits_per_dim - want) < 4 * got.standard_error


def test_discretized_likelihood_sums_to_one_over_the_256_bins():
    x = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, std in [(0.3, 0.05), (-0.95, 0.2), (0.999, 0.01)]:
        p = discretized_gaussian_log_likelihood(x, torch.tensor(mean), torch.tensor(std)).exp()
        assert p.sum().item() == pytest.approx(1.0, abs=1e-9)


def test_refuses_bad_input():
    model = TinyModel()
    x0 = torch.full((4, 1, 1, 1), X0)
    with pytest.raises(ValueError, match="8-bit"):
        variational_bound(model, SCHEDULE, x0 + 0.001)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        variational_bound(model, SCHEDULE, x0 + 2)
    with pytest.raises(ValueError, match="T = 9"):
        variational_bound(TinyModel(max_t=9), SCHEDULE, x0)
    with pytest.raises(ValueError, match="n_t"):
        variational_bound(model, SCHEDULE, x0, n_t=0)
    with pytest.raises(ValueError, match="beta_tilde"):
        variational_bound(model, SCHEDULE, x0, variance="learned")
