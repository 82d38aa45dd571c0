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


# -- the diffusion ELBO on a chain where every quantity is exact (lesson 01, section 10) ----------

def _gaussian_from_rows(mean: list, rows: list) -> torch.distributions.MultivariateNormal:
    """The joint Gaussian of variables v_k = mean_k + rows_k · ξ, with ξ standard normal."""
    width = max(len(r) for r in rows)
    L = torch.stack([torch.cat([r, torch.zeros(width - len(r), dtype=torch.float64)]) for r in rows])
    return torch.distributions.MultivariateNormal(torch.stack(mean), covariance_matrix=L @ L.T)


class GaussianChain:
    """A one-dimensional diffusion model with T steps, small enough that every quantity is exact.

    Forward process (fixed): q(x_t | x_{t-1}) = N(sqrt(α_t) x_{t-1}, 1 - α_t), t = 1..T.
    Reverse model (its parameters θ): p(x_T) = N(0, 1), p_θ(x_{t-1} | x_t) = N(a_t x_t + c_t, v_t).
    Every table is indexed by t (entry 0 unused): alpha[t] is α_t, a[t] is a_t. Because every step is
    linear and Gaussian, the joints q(x_{1:T} | x_0) and p_θ(x_{0:T}) are Gaussians we can write down,
    and so are log p_θ(x_0), the model's posterior p_θ(x_{1:T} | x_0) and each term of the ELBO.
    """

    def __init__(self, alpha, a, c, v):
        alpha, a, c, v = (torch.as_tensor(x, dtype=torch.float64) for x in (alpha, a, c, v))
        self.T = len(alpha)
        if not (len(a) == len(c) == len(v) == self.T):
            raise ValueError(f"alpha, a, c and v need one entry per step t = 1..T ({self.T}), got lengths "
                             f"{len(alpha)}, {len(a)}, {len(c)}, {len(v)}")
        if not ((alpha > 0) & (alpha < 1)).all() or not (v > 0).all():
            raise ValueError("every alpha_t must lie in (0, 1) and every variance v_t be positive")
        one = torch.ones(1, dtype=torch.float64)
        self.alpha, self.a, self.c, self.v = (torch.cat([one, x]) for x in (alpha, a, c, v))
        self.alpha_bar = torch.cumprod(self.alpha, 0)

    # the forward process
    def q_step(self, x_prev, t: int):
        """q(x_t | x_{t-1}) = N(sqrt(α_t) x_{t-1}, 1 - α_t): (mean, variance)."""
        return self.alpha[t].sqrt() * x_prev, 1 - self.alpha[t]

    def q_marginal(self, x0, t: int):
        """q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, 1 - ᾱ_t)."""
        return self.alpha_bar[t].sqrt() * x0, 1 - self.alpha_bar[t]

    def q_posterior(self, xt, x0, t: int):
        """q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t) for t >= 2, by Bayes' rule on the Gaussians above."""
        ab, ab_prev, beta = self.alpha_bar[t], self.alpha_bar[t - 1], 1 - self.alpha[t]
        mean = ab_prev.sqrt() * beta / (1 - ab) * x0 + self.alpha[t].sqrt() * (1 - ab_prev) / (1 - ab) * xt
        return mean, (1 - ab_prev) / (1 - ab) * beta

    # the reverse model
    def p_step(self, xt, t: int):
        """p_θ(x_{t-1} | x_t) = N(a_t x_t + c_t, v_t)."""
        return self.a[t] * xt + self.c[t], self.v[t]

    def q_joint(self, x0) -> torch.distributions.MultivariateNormal:
        """q(x_{1:T} | x_0) as one Gaussian over (x_1, ..., x_T)."""
        x0 = torch.as_tensor(x0, dtype=torch.float64)
        mean, row, means, rows = x0, torch.zeros(0, dtype=torch.float64), [], []
        for t in range(1, self.T + 1):
            mean = self.alpha[t].sqrt() * mean
            row = torch.cat([self.alpha[t].sqrt() * row, (1 - self.alpha[t]).sqrt().reshape(1)])
            means.append(mean), rows.append(row)
        return _gaussian_from_rows(means, rows)

    def p_joint(self) -> torch.distributions.MultivariateNormal:
        """p_θ(x_{0:T}) as one Gaussian over (x_0, x_1, ..., x_T)."""
        mean, row = torch.zeros((), dtype=torch.float64), torch.ones(1, dtype=torch.float64)
        means, rows = [mean], [row]                                    # x_T first, then x_{T-1}, ..., x_0
        for t in range(self.T, 0, -1):
            mean = self.a[t] * mean + self.c[t]
            row = torch.cat([self.a[t] * row, self.v[t].sqrt().reshape(1)])
            means.append(mean), rows.append(row)
        joint = _gaussian_from_rows(means[::-1], rows[::-1])
        return joint

    def log_evidence(self, x0):
        """log p_θ(x_0), exactly: the x_0 marginal of the joint Gaussian."""
        joint = self.p_joint()
        return normal_log_prob(torch.as_tensor(x0, dtype=torch.float64), joint.mean[0], joint.covariance_matrix[0, 0])

    def p_posterior(self, x0) -> torch.distributions.MultivariateNormal:
        """p_θ(x_{1:T} | x_0): the joint Gaussian conditioned on x_0."""
        joint = self.p_joint()
        m, S = joint.mean, joint.covariance_matrix
        gain = S[1:, 0] / S[0, 0]
        mean = m[1:] + gain * (torch.as_tensor(x0, dtype=torch.float64) - m[0])
        return torch.distributions.MultivariateNormal(mean, covariance_matrix=S[1:, 1:] - torch.outer(gain, S[0, 1:]))

    def elbo_terms(self, x0) -> dict:
        """The three terms of the ELBO in closed form: reconstruction E_q(x_1|x_0)[log p_θ(x_0 | x_1)],
        prior_matching KL(q(x_T | x_0) || N(0, 1)), and denoising {t: E_q(x_t|x_0)[KL(q(x_{t-1} | x_t, x_0)
        || p_θ(x_{t-1} | x_t))]} for t = 2..T. ELBO = reconstruction - prior_matching - Σ denoising."""
        x0 = torch.as_tensor(x0, dtype=torch.float64)
        m1, s1 = self.q_marginal(x0, 1)
        reconstruction = normal_log_prob(x0, self.a[1] * m1 + self.c[1], self.v[1]) - self.a[1] ** 2 * s1 / (2 * self.v[1])
        mT, sT = self.q_marginal(x0, self.T)
        denoising = {}
        for t in range(2, self.T + 1):
            mt, st = self.q_marginal(x0, t)
            coef_x0, coef_xt = self.q_posterior(torch.tensor(0.0), x0, t)[0], self.q_posterior(1.0, 0.0, t)[0]
            beta_tilde = self.q_posterior(0.0, 0.0, t)[1]
            slope = coef_xt - self.a[t]                                  # the means differ by slope·x_t + offset
            offset = coef_x0 - self.c[t]
            mean_sq = (slope * mt + offset) ** 2 + slope ** 2 * st       # E[(μ̃ - μ_θ)²] over x_t ~ q(x_t | x_0)
            # the KL is linear in (μ̃ − μ_θ)², so its expectation is the KL at E[(μ̃ − μ_θ)²]
            denoising[t] = kl_normal(mean_sq.sqrt(), beta_tilde, 0.0, self.v[t])
        return {"reconstruction": reconstruction, "prior_matching": kl_normal(mT, sT), "denoising": denoising}

    def elbo(self, x0):
        terms = self.elbo_terms(x0)
        return terms["reconstruction"] - terms["prior_matching"] - sum(terms["denoising"].values())


class LinearHierarchicalVAE(torch.nn.Module):
    """A Markovian hierarchical VAE on one-dimensional data x with T layers of latents z_1, ..., z_T
    (each of size latent_dim), every step linear and Gaussian, so log p_θ(x) stays exact.

    encoder: q_φ(z_1 | x) = N(E_1 x + f_1, diag e^{u_1}),  q_φ(z_t | z_{t-1}) = N(E_t z_{t-1} + f_t, diag e^{u_t});
    decoder: p(z_T) = N(0, I),  p_θ(z_{t-1} | z_t) = N(D_t z_t + g_t, diag e^{w_t}),  p_θ(x | z_1) likewise.
    fixed_alpha: None, or α_1..α_T: the encoder is then the diffusion forward process, not learned:
    E_t = sqrt(α_t), f_t = 0, variance 1 - α_t (this needs latent_dim == 1, the size of x).
    """

    def __init__(self, latent_dim: int, T: int, fixed_alpha=None):
        super().__init__()
        if fixed_alpha is not None and latent_dim != 1:
            raise ValueError(f"a fixed (diffusion) encoder keeps the size of x, so latent_dim must be 1, got {latent_dim}")
        if fixed_alpha is not None and len(fixed_alpha) != T:
            raise ValueError(f"fixed_alpha needs T = {T} entries, got {len(fixed_alpha)}")
        self.latent_dim, self.T = latent_dim, T
        sizes = [1] + [latent_dim] * T                                  # sizes[t]: size of z_t (z_0 = x)
        new = lambda *shape, scale=0.5: torch.nn.Parameter(scale * torch.randn(*shape, dtype=torch.float64))
        self.D = torch.nn.ParameterList([new(sizes[t - 1], sizes[t]) for t in range(1, T + 1)])
        self.g = torch.nn.ParameterList([new(sizes[t - 1], scale=0.0) for t in range(1, T + 1)])
        self.w = torch.nn.ParameterList([new(sizes[t - 1], scale=0.0) for t in range(1, T + 1)])
        if fixed_alpha is None:
            self.E = torch.nn.ParameterList([new(sizes[t], sizes[t - 1]) for t in range(1, T + 1)])
            self.f = torch.nn.ParameterList([new(sizes[t], scale=0.0) for t in range(1, T + 1)])
            self.u = torch.nn.ParameterList([new(sizes[t], scale=0.0) for t in range(1, T + 1)])
            self.fixed_alpha = None
        else:
            self.fixed_alpha = torch.as_tensor(fixed_alpha, dtype=torch.float64)

    def encoder_step(self, t: int, prev: torch.Tensor):
        """q_φ(z_t | z_{t-1}) (z_0 = x): mean (B, size) and variance (size,)."""
        if self.fixed_alpha is not None:
            a = self.fixed_alpha[t - 1]
            return a.sqrt() * prev, (1 - a).reshape(1)
        return prev @ self.E[t - 1].T + self.f[t - 1], self.u[t - 1].exp()

    def decoder_step(self, t: int, z: torch.Tensor):
        """p_θ(z_{t-1} | z_t) (z_0 = x): mean (B, size) and variance (size,)."""
        return z @ self.D[t - 1].T + self.g[t - 1], self.w[t - 1].exp()

    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One reparameterised sample of log [p(x, z_{1:T}) / q_φ(z_{1:T} | x)] per data point: an unbiased
        estimate of the ELBO, differentiable in θ and φ."""
        z = [x.reshape(-1, 1)]
        log_q = torch.zeros(len(z[0]), dtype=torch.float64)
        for t in range(1, self.T + 1):
            mean, var = self.encoder_step(t, z[-1])
            z.append(mean + var.sqrt() * torch.randn(mean.shape, generator=generator, dtype=torch.float64))
            log_q = log_q + normal_log_prob(z[t], mean, var).sum(1)
        log_p = normal_log_prob(z[self.T], 0.0, 1.0).sum(1)
        for t in range(self.T, 0, -1):
            mean, var = self.decoder_step(t, z[t])
            log_p = log_p + normal_log_prob(z[t - 1], mean, var).sum(1)
        return log_p - log_q

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """log p_θ(x), exactly: carry the decoder's Gaussian mean and covariance from z_T down to x."""
        mean = torch.zeros(self.latent_dim, dtype=torch.float64)
        cov = torch.eye(self.latent_dim, dtype=torch.float64)
        for t in range(self.T, 0, -1):
            D = self.D[t - 1]
            mean, cov = D @ mean + self.g[t - 1], D @ cov @ D.T + torch.diag(self.w[t - 1].exp())
        return normal_log_prob(x, mean[0], cov[0, 0])

    def prior_matching(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q_φ(z_T | x) || N(0, I)) per data point, exactly (q_φ(z_T | x) is Gaussian)."""
        mean, cov = x.reshape(-1, 1), torch.zeros(1, 1, dtype=torch.float64)
        for t in range(1, self.T + 1):
            if self.fixed_alpha is not None:
                a = self.fixed_alpha[t - 1]
                E, var = a.sqrt().reshape(1, 1), (1 - a).reshape(1)
                mean = mean @ E.T
            else:
                E, var = self.E[t - 1], self.u[t - 1].exp()
                mean = mean @ E.T + self.f[t - 1]
            cov = E @ cov @ E.T + torch.diag(var)
        k = self.latent_dim
        return 0.5 * (torch.diagonal(cov).sum() + (mean ** 2).sum(1) - k - torch.logdet(cov))
