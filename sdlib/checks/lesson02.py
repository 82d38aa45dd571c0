"""Checkers for lesson 02 (the forward noising process)."""
from __future__ import annotations

import math

import torch

from ..schedules import NoiseSchedule, cosine_alpha_bar
from . import ExerciseError, as_tensor, call, expect_close, passed


def _same(got: torch.Tensor, table: torch.Tensor) -> bool:
    return got.shape == table.shape and torch.allclose(got.double(), table.double())


def check_alpha_bar(alpha_bar_from_betas) -> None:
    """alpha_bar_from_betas(betas) -> the table of ᾱ_t = prod_{s<=t} (1 - beta_s) for t = 0..T.

    betas: (T,) tensor holding beta_1..beta_T (position 0 holds beta_1, as a paper lists them).
    The answer is indexed by t, like NoiseSchedule.alpha_bar: T + 1 entries, entry 0 = ᾱ_0 = 1
    (the clean image), entry t = ᾱ_t.
    """
    for schedule in [NoiseSchedule.linear(1000), NoiseSchedule.cosine(50), NoiseSchedule.linear(10, 0.05, 0.3)]:
        betas = schedule.beta[1:].clone()                    # (T,): beta_1..beta_T
        T = len(betas)
        want = schedule.alpha_bar                            # (T + 1,): want[t] = ᾱ_t, want[0] = 1
        got = call(alpha_bar_from_betas, betas.clone())
        got_t = as_tensor(got, "ᾱ", like=want)
        one = torch.ones(1, dtype=torch.float64)
        for wrong, message in [
            (torch.cumprod(betas, 0), "You multiplied the betas; ᾱ_t multiplies the alphas, alpha_t = 1 - beta_t."),
            (1 - torch.cumsum(betas, 0), "1 - Σ beta is only a first-order approximation: ᾱ_t is a product, "
                                         "prod_s (1 - beta_s) (torch.cumprod)."),
        ]:
            if _same(got_t, wrong) or _same(got_t, torch.cat([one, wrong])):
                raise ExerciseError(message)
        if _same(got_t, want[1:]) or (got_t.shape == want.shape and _same(got_t[:-1], want[1:])):
            raise ExerciseError(
                f"The t / t-1 trap: your table holds ᾱ_1 at index 0, so alpha_bar[t] is ᾱ_(t+1), one step too "
                f"noisy. Index the table by t, as every table in the course is: T + 1 = {T + 1} entries, entry 0 "
                f"= ᾱ_0 = 1 (the clean image, nothing multiplied yet), then ᾱ_1..ᾱ_T: "
                f"torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)]).")
        if got_t.shape == want.shape and _same(got_t[1:], want[1:]) and not math.isclose(got_t[0].item(), 1.0):
            raise ExerciseError(f"Entry 0 should be ᾱ_0 = 1 (the clean image keeps all its signal), "
                                f"got {got_t[0].item():.6g}.")
        expect_close(got, want, f"ᾱ_0..ᾱ_T for T={T}",
                     hint=f"Return T + 1 = {T + 1} values indexed by t: alpha_bar[0] = 1 and alpha_bar[t] = "
                          f"(1 - beta_1)(1 - beta_2)...(1 - beta_t), the cumulative product of 1 - betas "
                          f"(torch.cumprod) with a 1 in front.",
                     rtol=1e-6, atol=1e-9)
    passed("ᾱ_t = Π_{s<=t} (1 - beta_s) in a table indexed by t: alpha_bar[0] = 1 (the clean image), "
           "alpha_bar[t] = ᾱ_t.")


def check_cosine_alpha_bar(cosine_alpha_bar_fn) -> None:
    """cosine_alpha_bar_fn(t, T, s) -> Nichol & Dhariwal's ᾱ_t = f(t)/f(0)."""
    for T, s in [(1000, 0.008), (50, 0.0), (200, 0.02)]:
        t = torch.arange(0, T + 1)
        got = call(cosine_alpha_bar_fn, t.clone(), T, s)
        want = cosine_alpha_bar(t, T, s)
        got_t = as_tensor(got, "ᾱ_t", like=want)
        if got_t.shape == want.shape and s > 0:
            f = torch.cos((t.double() / T + s) / (1 + s) * math.pi / 2) ** 2
            if torch.allclose(got_t.double(), f, atol=1e-7) and not torch.allclose(f, want, atol=1e-7):
                raise ExerciseError("Divide by f(0) so that ᾱ_0 = 1 exactly: the clean image has all its signal.")
        expect_close(got, want, f"ᾱ_t for T={T}, s={s}",
                     hint="f(t) = cos(((t/T + s) / (1 + s)) · π/2)², ᾱ_t = f(t) / f(0).", rtol=1e-5, atol=1e-7)
    passed("the cosine schedule: ᾱ_0 = 1, falling smoothly to ~0 at t = T.")


def check_add_noise(add_noise) -> None:
    """add_noise(x0, eps, alpha_bar_t) -> x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 28, 28, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 28, 28, generator=g)
    schedule = NoiseSchedule.linear()
    t = torch.tensor([1, 250, 600, 1000])
    ab = schedule.alpha_bar[t].float().reshape(4, 1, 1, 1)
    got = call(add_noise, x0.clone(), eps.clone(), ab.clone())
    want = schedule.add_noise(x0, eps, t)
    got_t = as_tensor(got, "x_t", like=want)
    if got_t.shape == want.shape and torch.allclose(got_t.float(), ab * x0 + (1 - ab) * eps, atol=1e-5):
        raise ExerciseError("Those coefficients are variances: scale by their square roots, "
                            "sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps.")
    expect_close(got, want, "x_t", hint="x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps.", rtol=1e-5, atol=1e-5)
    passed("x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps: any time step in one jump.")


def check_posterior(posterior_mean_var) -> None:
    """posterior_mean_var(x0, xt, beta_t, alpha_bar_t, alpha_bar_prev) -> (mean, variance) of q(x_{t-1} | x_t, x_0)."""
    g = torch.Generator().manual_seed(1)
    schedule = NoiseSchedule.linear()
    for t in [2, 10, 300, 999]:
        x0 = torch.rand(3, 5, generator=g, dtype=torch.float64) * 2 - 1
        xt = schedule.add_noise(x0, torch.randn(3, 5, generator=g, dtype=torch.float64), t)
        beta, ab, ab_prev = (schedule.beta[t].item(), schedule.alpha_bar[t].item(), schedule.alpha_bar_prev[t].item())
        got = call(posterior_mean_var, x0.clone(), xt.clone(), beta, ab, ab_prev)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            raise ExerciseError("return two things: (mean, variance)")
        mean, var = schedule.posterior(x0, xt, t)
        if (torch.allclose(as_tensor(got[1], "the variance").double(), torch.tensor(beta, dtype=torch.float64))
                and not math.isclose(beta, var.flatten()[0].item(), rel_tol=1e-5)):
            raise ExerciseError("The posterior variance is not beta_t: it is beta_tilde_t = "
                                "(1 - ᾱ_{t-1}) / (1 - ᾱ_t) · beta_t, a little smaller.")
        expect_close(got[1], var.flatten()[0] if as_tensor(got[1], "the variance").dim() == 0 else var.expand_as(x0),
                     f"the variance at t={t}", hint="beta_tilde_t = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · beta_t.",
                     rtol=1e-6, atol=1e-12)
        expect_close(got[0], mean, f"the mean at t={t}",
                     hint="mean = sqrt(ᾱ_{t-1}) beta_t / (1 - ᾱ_t) · x0 + sqrt(alpha_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · x_t, "
                          "with alpha_t = 1 - beta_t.", rtol=1e-6, atol=1e-10)
    passed("q(x_{t-1} | x_t, x_0): mean and variance both right at t = 2, 10, 300 and 999.")
