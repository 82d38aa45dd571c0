"""Checkers for lesson 01 (probability and the ELBO)."""
from __future__ import annotations

import torch

from ..probability import LinearGaussian, fake_identities, kl_normal
from . import ExerciseError, as_tensor, call, expect, expect_close, passed


def _random_joint(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    table = torch.rand(rows, cols, generator=g, dtype=torch.float64) ** 3
    return table / table.sum()


def check_marginal_height(marginal_height) -> None:
    """marginal_height(joint) -> p(height) for a table joint[age, height]."""
    cases = [_random_joint(5, 7, 0), _random_joint(9, 4, 1), fake_identities().joint]
    for joint in cases:
        got = call(marginal_height, joint.clone())
        expect_close(got, joint.sum(dim=0), "p(height)",
                     hint="Rows are ages and columns heights: p(height) sums the joint over the ages, "
                          "so it has one entry per column.")
    passed("p(height) = Σ_age p(age, height): you summed out the age.")


def check_posterior_age(posterior_age) -> None:
    """posterior_age(joint, h) -> p(age | height = heights[h]) for a table joint[age, height]."""
    for seed, (rows, cols) in enumerate([(6, 5), (4, 9), (12, 3)]):
        joint = _random_joint(rows, cols, 10 + seed)
        for h in range(cols):
            got = call(posterior_age, joint.clone(), h)
            want = joint[:, h] / joint[:, h].sum()
            got_t = as_tensor(got, f"p(age | height index {h})", like=want)
            if got_t.shape == want.shape and torch.allclose(got_t.double(), joint[:, h], atol=1e-12):
                raise ExerciseError("You returned p(age, height) for that height, not p(age | height): "
                                    "divide by the evidence p(height) so the posterior sums to 1.")
            likelihood = joint[:, h] / joint.sum(dim=1)
            if got_t.shape == want.shape and torch.allclose(got_t.double(), likelihood, atol=1e-12):
                raise ExerciseError("That is the likelihood p(height | age), not the posterior p(age | height): "
                                    "multiply by the prior p(age) and divide by the evidence p(height).")
            expect_close(got, want, f"p(age | height index {h})",
                         hint="Bayes: p(age | h) = p(h | age) p(age) / p(h), and p(h | age) p(age) = p(age, h).")
            expect(abs(float(as_tensor(got, "the posterior").sum()) - 1) < 1e-6, "a posterior must sum to 1 over the ages")
    passed("p(age | height) = p(height | age) p(age) / p(height): prior times likelihood over evidence.")


def check_kl_gaussians(kl_gaussians) -> None:
    """kl_gaussians(mu_q, sigma_q, mu_p, sigma_p) -> KL(N(mu_q, sigma_q²) || N(mu_p, sigma_p²))."""
    g = torch.Generator().manual_seed(3)
    mu_q, mu_p = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    sigma_q = torch.rand(6, generator=g, dtype=torch.float64) * 2 + 0.2
    sigma_p = torch.rand(6, generator=g, dtype=torch.float64) * 2 + 0.2
    got = call(kl_gaussians, mu_q.clone(), sigma_q.clone(), mu_p.clone(), sigma_p.clone())
    want = kl_normal(mu_q, sigma_q ** 2, mu_p, sigma_p ** 2)
    got_t = as_tensor(got, "KL(q || p)", like=want)
    if got_t.shape == want.shape:
        swapped = kl_normal(mu_p, sigma_p ** 2, mu_q, sigma_q ** 2)
        if torch.allclose(got_t.double(), swapped, rtol=1e-6):
            raise ExerciseError("You computed KL(p || q) instead of KL(q || p): the KL divergence is not symmetric; "
                                "the expectation is taken under the first distribution, q.")
        as_var = kl_normal(mu_q, sigma_q, mu_p, sigma_p)
        if torch.allclose(got_t.double(), as_var, rtol=1e-6):
            raise ExerciseError("The arguments are standard deviations σ; the formula needs variances σ². "
                                "Square them first.")
    expect_close(got, want, "KL(q || p)",
                 hint="KL = log(σ_p/σ_q) + (σ_q² + (μ_q - μ_p)²) / (2 σ_p²) - 1/2.")
    same = call(kl_gaussians, mu_q.clone(), sigma_q.clone(), mu_q.clone(), sigma_q.clone())
    expect_close(same, torch.zeros(6, dtype=torch.float64), "KL(q || q)", hint="A distribution is at KL 0 from itself.",
                 atol=1e-9)
    passed("KL(q || p) in closed form matches, and KL(q || q) = 0.")


def check_elbo(elbo) -> None:
    """elbo(x, q_mean, q_var, w, b, s) -> the ELBO of q(z|x) = N(q_mean, q_var) under LinearGaussian(w, b, s)."""
    for w, b, s in [(2.0, 1.0, 0.5), (-0.7, 0.3, 1.3)]:
        model = LinearGaussian(w, b, s)
        g = torch.Generator().manual_seed(5)
        x = torch.randn(8, generator=g, dtype=torch.float64) * 2
        q_mean = torch.randn(8, generator=g, dtype=torch.float64)
        q_var = torch.rand(8, generator=g, dtype=torch.float64) + 0.1
        got = call(elbo, x.clone(), q_mean.clone(), q_var.clone(), w, b, s)
        want = model.elbo(x, q_mean, q_var)
        got_t = as_tensor(got, "the ELBO", like=want)
        if got_t.shape == want.shape:
            no_kl = model.reconstruction(x, q_mean, q_var)
            if torch.allclose(got_t.double(), no_kl, rtol=1e-6):
                raise ExerciseError("That is only the reconstruction term E_q[log p(x|z)]: subtract the prior-matching "
                                    "term KL(q(z|x) || p(z)).")
            if torch.allclose(got_t.double(), no_kl + kl_normal(q_mean, q_var), rtol=1e-6):
                raise ExerciseError("The KL term has the wrong sign: ELBO = reconstruction - KL(q || p(z)).")
        expect_close(got, want, "the ELBO",
                     hint="ELBO = E_q[log p(x|z)] - KL(q(z|x) || N(0,1)); with z = m + sqrt(v) ε, "
                          "E_q[(x - b - w z)²] = (x - b - w m)² + w² v.")
        post_mean, post_var = model.posterior(x)
        at_posterior = as_tensor(call(elbo, x.clone(), post_mean, post_var, w, b, s), "the ELBO at q = p(z|x)")
        expect_close(at_posterior, model.log_evidence(x), "the ELBO at q = p(z|x)",
                     hint="When q is the true posterior the bound is tight: ELBO = log p(x).")
    passed("your ELBO matches, and it equals log p(x) exactly when q is the true posterior.")
