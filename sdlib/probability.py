"""Lesson 01's probability toolkit: Gaussians, KL divergence, and two toy models whose every
quantity (evidence, posterior, ELBO) can be computed exactly, so the theory can be checked.

- `fake_identities()`: a joint table p(age, height) for the seed notes' forger of identities.
- `LinearGaussian`: z ~ N(0, 1), x | z ~ N(w z + b, s²): the smallest latent-variable model in
  which log p(x), the posterior p(z | x) and the ELBO of any Gaussian q(z | x) have closed forms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


def normal_log_prob(x, mean, var):
    """log N(x; mean, var), elementwise (var is the variance, not the standard deviation)."""
    x, mean, var = (torch.as_tensor(v, dtype=torch.float64) if not isinstance(v, torch.Tensor) else v
                    for v in (x, mean, var))
    return -0.5 * (LOG_2PI + torch.log(var) + (x - mean) ** 2 / var)


def kl_normal(mean_q, var_q, mean_p=0.0, var_p=1.0):
    """KL(N(mean_q, var_q) || N(mean_p, var_p)) per dimension, in nats.

    = ½ [ log(var_p/var_q) + (var_q + (mean_q - mean_p)²)/var_p - 1 ]
    With the defaults it is the VAE's prior-matching term against N(0, 1).
    """
    mean_q, var_q, mean_p, var_p = (torch.as_tensor(v, dtype=torch.float64) if not isinstance(v, torch.Tensor) else v
                                    for v in (mean_q, var_q, mean_p, var_p))
    return 0.5 * (torch.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / var_p - 1.0)


# -- the forger's joint distribution -----------------------------------------------------------

@dataclass
class FakeIdentities:
    """p(age, height) on a grid: ages 0..89 years (rows), heights 40..209 cm (columns)."""

    ages: torch.Tensor      # (A,) years
    heights: torch.Tensor   # (H,) centimetres
    joint: torch.Tensor     # (A, H) probabilities summing to 1

    def typical_height(self, age):
        return typical_height(age)

    def height_spread(self, age):
        return height_spread(age)


def typical_height(age):
    """Mean height in cm at a given age: 50 cm at birth, levelling off near 170 cm."""
    age = torch.as_tensor(age, dtype=torch.float64)
    return 170.0 - 120.0 * torch.exp(-age / 6.0)


def height_spread(age):
    """Standard deviation of height in cm at a given age: 2 cm at birth, 8 cm for adults."""
    age = torch.as_tensor(age, dtype=torch.float64)
    return 2.0 + 6.0 * (1.0 - torch.exp(-age / 8.0))


def age_prior(ages: torch.Tensor) -> torch.Tensor:
    """p(age): flat up to 60, then falling linearly to nothing at 90."""
    weight = torch.where(ages < 60, torch.ones_like(ages), (90.0 - ages) / 30.0).clamp(min=0)
    return weight / weight.sum()


def fake_identities() -> FakeIdentities:
    """The joint table p(age, height) = p(age) p(height | age), p(height | age) a binned Gaussian."""
    ages = torch.arange(0, 90, dtype=torch.float64)
    heights = torch.arange(40, 210, dtype=torch.float64)
    mean, sd = typical_height(ages)[:, None], height_spread(ages)[:, None]
    likelihood = torch.exp(-0.5 * ((heights[None, :] - mean) / sd) ** 2)
    likelihood = likelihood / likelihood.sum(dim=1, keepdim=True)          # p(height | age), rows sum to 1
    joint = age_prior(ages)[:, None] * likelihood
    return FakeIdentities(ages, heights, joint / joint.sum())


# -- a latent-variable model with everything in closed form ------------------------------------

@dataclass
class LinearGaussian:
    """z ~ N(0, 1), x | z ~ N(w z + b, s²). Then p(x) = N(b, w² + s²) and p(z | x) is Gaussian."""

    w: float = 2.0
    b: float = 1.0
    s: float = 0.5

    def sample(self, n: int, generator: torch.Generator | None = None):
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        x = self.w * z + self.b + self.s * torch.randn(n, generator=generator, dtype=torch.float64)
        return x, z

    def log_evidence(self, x):
        """log p(x) = log N(x; b, w² + s²)."""
        return normal_log_prob(x, self.b, self.w ** 2 + self.s ** 2)

    def log_joint(self, x, z):
        """log p(x, z) = log p(z) + log p(x | z)."""
        return normal_log_prob(z, 0.0, 1.0) + normal_log_prob(x, self.w * z + self.b, self.s ** 2)

    def posterior(self, x):
        """p(z | x) = N(mean, var): precision 1 + w²/s², mean = var · w (x - b) / s²."""
        x = torch.as_tensor(x, dtype=torch.float64)
        var = 1.0 / (1.0 + self.w ** 2 / self.s ** 2)
        return var * self.w * (x - self.b) / self.s ** 2, torch.full_like(x, var)

    def reconstruction(self, x, q_mean, q_var):
        """E_q[log p(x | z)] for q(z | x) = N(q_mean, q_var), in closed form."""
        x = torch.as_tensor(x, dtype=torch.float64)
        return normal_log_prob(x, self.b + self.w * q_mean, self.s ** 2) - 0.5 * self.w ** 2 * q_var / self.s ** 2

    def elbo(self, x, q_mean, q_var):
        """ELBO = E_q[log p(x | z)] - KL(q(z | x) || p(z)): reconstruction minus prior matching."""
        return self.reconstruction(x, q_mean, q_var) - kl_normal(q_mean, q_var, 0.0, 1.0)
