"""Checkers for lesson 03 (DDPM on MNIST)."""
from __future__ import annotations

import math

import torch

from ..samplers import DDIMSampler, DDPMSampler
from ..schedules import NoiseSchedule
from . import ExerciseError, as_tensor, call, expect, expect_close, passed

_S = NoiseSchedule.linear(1000)


class _ToyModel(torch.nn.Module):
    """A fixed stand-in for the U-Net: eps_pred = 0.5 x_t + t/1000 (enough to tell formulas apart)."""

    def forward(self, x, t, *args):
        return 0.5 * x + t.float().reshape(-1, 1, 1, 1) / 1000


def check_simple_loss(simple_loss) -> None:
    """simple_loss(model, x0, t, eps, alpha_bar_t) -> the scalar || eps - model(x_t, t) ||² (mean)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    eps = torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([1, 10, 500, 1000])
    ab = _S.alpha_bar[t].float().reshape(4, 1, 1, 1)
    model = _ToyModel()
    got = call(simple_loss, model, x0.clone(), t.clone(), eps.clone(), ab.clone())
    got = as_tensor(got, "the loss", like=x0)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    want = ((eps - model(xt, t)) ** 2).mean()
    expect(got.dim() == 0, f"the loss should be one number (a 0-d tensor), got shape {tuple(got.shape)}: take the mean")
    if torch.allclose(got, ((x0 - model(xt, t)) ** 2).mean(), atol=1e-6):
        raise ExerciseError("The network predicts the noise eps, not the clean image: compare its output with eps.")
    wrong_xt = ab * x0 + (1 - ab) * eps
    if torch.allclose(got, ((eps - model(wrong_xt, t)) ** 2).mean(), atol=1e-6):
        raise ExerciseError("x_t uses square roots: sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps.")
    expect_close(got, want, "the loss", hint="x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps; loss = mean((eps - model(x_t, t))²).",
                 rtol=1e-5, atol=1e-7)
    passed("Algorithm 1's loss: noise the image in one jump, predict the noise, squared error.")


def check_ddpm_step(ddpm_step) -> None:
    """ddpm_step(x_t, eps_pred, t, beta_t, alpha_bar_t, z) -> x_{t-1} of Algorithm 2 with sigma_t² = beta_t."""
    g = torch.Generator().manual_seed(1)
    sampler = DDPMSampler(_S)
    for t in [1000, 400, 20, 2, 1]:
        x_t, eps = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
        z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(t))
        got = call(ddpm_step, x_t.clone(), eps.clone(), t, _S.beta[t].item(), _S.alpha_bar[t].item(), z.clone())
        want = sampler.step(eps, t, x_t, torch.Generator().manual_seed(t)).x_prev
        a, ab = 1 - _S.beta[t].item(), _S.alpha_bar[t].item()
        got_t = as_tensor(got, f"x_(t-1) at t={t}", like=want)
        if got_t.shape == want.shape and t > 1:
            with_alpha_bar = (x_t - (1 - a) / math.sqrt(1 - ab) * eps) / math.sqrt(ab) + math.sqrt(1 - a) * z
            if torch.allclose(got_t, with_alpha_bar, atol=1e-5):
                raise ExerciseError("Divide by sqrt(alpha_t) (this step's alpha), not sqrt(ᾱ_t).")
        if t == 1 and got_t.shape == want.shape and not torch.allclose(got_t, want, atol=1e-5):
            raise ExerciseError("At t = 1 the last step adds no noise (z = 0): return the mean only.")
        expect_close(got, want, f"x_(t-1) at t={t}",
                     hint="x_(t-1) = (x_t - (1 - alpha_t)/sqrt(1 - ᾱ_t) · eps) / sqrt(alpha_t) + sqrt(beta_t) · z, "
                          "with alpha_t = 1 - beta_t.", rtol=1e-5, atol=1e-5)
    passed("one step of Algorithm 2, including the noise-free last step.")


def check_ddim_step(ddim_step) -> None:
    """ddim_step(x_t, eps_pred, alpha_bar_t, alpha_bar_prev) -> x_prev of deterministic DDIM (eta = 0)."""
    g = torch.Generator().manual_seed(2)
    sampler = DDIMSampler(_S, steps=20)
    for t in sampler.timesteps[::4] + [sampler.timesteps[-1]]:
        x_t, eps = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
        ab, ab_prev = _S.alpha_bar[t].item(), _S.alpha_bar[sampler.previous[t]].item()
        got = call(ddim_step, x_t.clone(), eps.clone(), ab, ab_prev)
        want = sampler.step(eps, t, x_t).x_prev
        got_t = as_tensor(got, f"x_prev at t={t}", like=want)
        if got_t.shape == want.shape:
            x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
            if torch.allclose(got_t, math.sqrt(ab_prev) * x0, atol=1e-5) and ab_prev < 1:
                raise ExerciseError("Keep the noise direction: add sqrt(1 - ᾱ_prev) · eps_pred to sqrt(ᾱ_prev) · x0_pred.")
        expect_close(got, want, f"x_prev at t={t}",
                     hint="x0_pred = (x_t - sqrt(1 - ᾱ_t) eps) / sqrt(ᾱ_t); x_prev = sqrt(ᾱ_prev) x0_pred + "
                          "sqrt(1 - ᾱ_prev) eps.", rtol=1e-5, atol=1e-5)
    passed("deterministic DDIM: predict x0, then re-noise it to the earlier step with the same eps.")
