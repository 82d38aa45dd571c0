import math

import pytest
import torch

from sdlib.samplers import ClassifierFreeGuidance, DDIMSampler, DDPMSampler, guidance, sample
from sdlib.schedules import NoiseSchedule

S = NoiseSchedule.linear(1000)


def test_ddpm_step_is_algorithm_2_and_the_posterior():
    g = torch.Generator().manual_seed(0)
    x_t, eps = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    for t in [2, 50, 700, 1000]:
        out = DDPMSampler(S).step(eps, t, x_t, torch.Generator().manual_seed(7))
        z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7))
        # Algorithm 2, written independently
        a, ab, b = S.alpha[t].item(), S.alpha_bar[t].item(), S.beta[t].item()
        want = (x_t - (1 - a) / math.sqrt(1 - ab) * eps) / math.sqrt(a) + math.sqrt(b) * z
        torch.testing.assert_close(out.x_prev, want, atol=1e-5, rtol=1e-5)
        # the same mean is the posterior q(x_{t-1} | x_t, x0) at the predicted x0
        mean, _ = S.posterior(out.x0_pred, x_t, t)
        torch.testing.assert_close(out.x_prev - math.sqrt(b) * z, mean, atol=1e-5, rtol=1e-5)
        tilde = DDPMSampler(S, "beta_tilde").step(eps, t, x_t, torch.Generator().manual_seed(7))
        torch.testing.assert_close(tilde.x_prev - mean, math.sqrt(S.beta_tilde[t].item()) * z, atol=1e-5, rtol=1e-5)
    last = DDPMSampler(S).step(eps, 1, x_t, torch.Generator().manual_seed(7))      # no noise at t = 1
    torch.testing.assert_close(last.x_prev, S.predict_x0(x_t, eps, 1), atol=1e-5, rtol=1e-5)


def test_ddim_with_eta_one_and_all_steps_is_ddpm_with_posterior_variance():
    g = torch.Generator().manual_seed(1)
    x_t, eps = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    ddim = DDIMSampler(S, steps=1000, eta=1.0)
    assert ddim.timesteps == list(range(1000, 0, -1))
    for t in [2, 30, 999]:
        a = ddim.step(eps, t, x_t, torch.Generator().manual_seed(3)).x_prev
        b = DDPMSampler(S, "beta_tilde").step(eps, t, x_t, torch.Generator().manual_seed(3)).x_prev
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_ddim_eta_zero_is_deterministic_and_eta_one_is_not():
    x_t, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    s = DDIMSampler(S, steps=20, eta=0.0)
    a = s.step(eps, 1000, x_t, torch.Generator().manual_seed(1)).x_prev
    b = s.step(eps, 1000, x_t, torch.Generator().manual_seed(2)).x_prev
    assert torch.equal(a, b)
    s1 = DDIMSampler(S, steps=20, eta=1.0)
    assert not torch.equal(s1.step(eps, 1000, x_t, torch.Generator().manual_seed(1)).x_prev,
                           s1.step(eps, 1000, x_t, torch.Generator().manual_seed(2)).x_prev)


def test_ddim_time_steps():
    s = DDIMSampler(S, steps=50)
    assert len(s.timesteps) == 50 and s.timesteps[0] == 1000 and s.timesteps[-1] == 20
    assert s.previous[20] == 0 and all(a > b for a, b in zip(s.timesteps, s.timesteps[1:]))


class PerfectDenoiser:
    """The exact ε-prediction when every training image is the same image c: ε = (x_t − sqrt(ᾱ) c)/sqrt(1 − ᾱ)."""

    def __init__(self, c):
        self.c = c

    def __call__(self, x, t):
        ab = S.alpha_bar[t].float().reshape(-1, 1, 1, 1)
        return (x - ab.sqrt() * self.c) / (1 - ab).sqrt()


@pytest.mark.parametrize("sampler", [DDPMSampler(S), DDPMSampler(S, "beta_tilde"), DDIMSampler(S, 50),
                                     DDIMSampler(S, 10, eta=0.5)], ids=repr)
def test_a_perfect_denoiser_leads_every_sampler_to_the_data(sampler):
    c = torch.linspace(-1, 1, 16).reshape(1, 1, 4, 4)
    x, record = sample(PerfectDenoiser(c), sampler, (5, 1, 4, 4), generator=torch.Generator().manual_seed(0),
                       progress=False, trajectory=True, device="cpu")
    torch.testing.assert_close(x, c.expand_as(x), atol=1e-3, rtol=0)
    assert len(record.t) == len(sampler.timesteps) and record.t[0] == 1000
    torch.testing.assert_close(record.x0_pred[-1], c.expand_as(x), atol=1e-3, rtol=0)


def test_sampling_is_seeded_and_batches_agree():
    den = PerfectDenoiser(torch.zeros(1, 1, 4, 4))
    a = sample(den, DDPMSampler(S), (4, 1, 4, 4), generator=torch.Generator().manual_seed(5), progress=False, device="cpu")
    b = sample(den, DDPMSampler(S), (4, 1, 4, 4), generator=torch.Generator().manual_seed(5), progress=False, device="cpu")
    assert torch.equal(a, b)
    x_T = torch.randn(6, 1, 4, 4)
    whole = sample(den, DDIMSampler(S, 10), x_T=x_T, progress=False)
    split = sample(den, DDIMSampler(S, 10), x_T=x_T, progress=False, batch_size=4)
    torch.testing.assert_close(whole, split)


@pytest.mark.parametrize("make, error, message", [
    (lambda: DDIMSampler(S, steps=1001), ValueError, "at most 1000"),
    (lambda: DDIMSampler(S, steps=0), ValueError, "at least 1"),
    (lambda: DDIMSampler(S, steps=10, eta=1.5), ValueError, r"eta must lie in \[0, 1\]"),
    (lambda: DDIMSampler(S, steps=10, eta=float("nan")), ValueError, "finite"),
    (lambda: DDPMSampler(S, variance="sigma"), ValueError, "'beta' or 'beta_tilde'"),
    (lambda: DDPMSampler(S).step(torch.zeros(1, 1, 4, 4), 5, torch.zeros(1, 1, 4, 5)), ValueError, "same shape"),
    (lambda: DDPMSampler(S).step(torch.zeros(1, 1, 4, 4), 0, torch.zeros(1, 1, 4, 4)), ValueError, r"\[1, 1000\]"),
    (lambda: DDIMSampler(S, 10).step(torch.zeros(1, 1, 4, 4), 999, torch.zeros(1, 1, 4, 4)), ValueError,
     "not one of this sampler's"),
    (lambda: DDPMSampler(S).step(torch.zeros(1, 1, 4, 4, dtype=torch.long), 5, torch.zeros(1, 1, 4, 4)), TypeError,
     "floating-point"),
])
def test_bad_sampler_inputs(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_guidance_formula():
    cond, uncond = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    torch.testing.assert_close(guidance(cond, uncond, 1.0), cond)           # w = 1: the conditional model
    torch.testing.assert_close(guidance(cond, uncond, 0.0), uncond)         # w = 0: the unconditional one
    torch.testing.assert_close(guidance(cond, uncond, 3.0), uncond + 3 * (cond - uncond))
