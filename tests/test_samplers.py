import math

import pytest
import torch

from sdlib.samplers import DDIMSampler, DDPMSampler, guidance, sample
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


# -- one loop, the same images whatever the batch size ----------------------------------------------

def test_sample_does_not_depend_on_the_batch_size():
    from sdlib.samplers import DDIMSampler, DDPMSampler, sample
    from sdlib.schedules import NoiseSchedule

    s = NoiseSchedule.linear(50)
    denoiser = lambda x, t: 0.1 * x + 0.01 * t[:, None, None, None].float() / 50   # noqa: E731
    for sampler in (DDIMSampler(s, 5, eta=1.0), DDPMSampler(s)):
        whole = sample(denoiser, sampler, (4, 1, 3, 3), seed=7, progress=False)
        pairs = sample(denoiser, sampler, (4, 1, 3, 3), seed=7, batch_size=2, progress=False)
        assert torch.equal(whole, pairs)
        assert torch.equal(whole[:1], sample(denoiser, sampler, (1, 1, 3, 3), seed=7, progress=False))
    g = torch.Generator().manual_seed(1)
    assert not torch.equal(sample(denoiser, DDIMSampler(s, 5, eta=1.0), (2, 1, 3, 3), generator=g, progress=False),
                           sample(denoiser, DDIMSampler(s, 5, eta=1.0), (2, 1, 3, 3), generator=g, progress=False))
    with pytest.raises(ValueError, match="a seed or a generator, not both"):
        sample(denoiser, DDIMSampler(s, 5), (2, 1, 3, 3), seed=1, generator=torch.Generator(), progress=False)


def test_sample_visits_the_given_timesteps_and_calls_the_hook():
    from sdlib.samplers import DDIMSampler, sample
    from sdlib.schedules import NoiseSchedule

    s = NoiseSchedule.linear(50)
    seen = []

    def hook(t, t_prev, x):
        seen.append((t, t_prev))
        return x.clamp(-0.5, 0.5) if t_prev == 0 else x

    x = sample(lambda x, t: 0 * x, DDIMSampler(s, 5), (2, 1, 2, 2), seed=0, timesteps=[33, 20, 10],
               on_step=hook, progress=False)
    assert seen == [(33, 20), (20, 10), (10, 0)] and x.abs().max() <= 0.5
    with pytest.raises(ValueError, match="from high to low"):
        sample(lambda x, t: 0 * x, DDIMSampler(s, 5), (2, 1, 2, 2), seed=0, timesteps=[10, 20], progress=False)


def test_a_schedule_that_does_not_match_the_model_is_refused():
    from sdlib.samplers import DDIMSampler, sample
    from sdlib.schedules import NoiseSchedule
    from sdlib.unet import UNet, UNetConfig

    unet = UNet(UNetConfig(channels=(8, 16), image_size=8, groups=4, max_t=1000))
    with pytest.raises(ValueError, match="trained with T = 1000 .* T = 500"):
        sample(unet, DDIMSampler(NoiseSchedule.linear(500), 2), (1, 1, 8, 8), progress=False)
    unet.schedule = NoiseSchedule.linear(1000)         # what sdlib.pretrained sets from the manifest
    with pytest.raises(ValueError, match="'linear' schedule but the sampler uses 'cosine'"):
        sample(unet, DDIMSampler(NoiseSchedule.cosine(1000), 2), (1, 1, 8, 8), progress=False)


def test_steps_at_fractional_or_boolean_times_are_refused():
    from sdlib.samplers import DDIMSampler, DDPMSampler
    from sdlib.schedules import NoiseSchedule

    s, x = NoiseSchedule.linear(50), torch.zeros(1, 1, 2, 2)
    with pytest.raises(TypeError, match="integer time step"):
        DDPMSampler(s).step(x, 2.7, x)
    with pytest.raises(TypeError, match="integer time step"):
        DDPMSampler(s).step(x, True, x)
    with pytest.raises(ValueError, match="t_prev must be below t"):
        DDIMSampler(s, 5).step(x, 20, x, t_prev=30)
    with pytest.raises(TypeError, match="steps must be an int"):
        DDIMSampler(s, True)


def test_diverging_samples_warn():
    from sdlib.samplers import DDIMSampler, sample
    from sdlib.schedules import NoiseSchedule

    with pytest.warns(RuntimeWarning, match="sampling diverged"):
        sample(lambda x, t: -1e4 * torch.ones_like(x), DDIMSampler(NoiseSchedule.linear(50), 3), (1, 1, 2, 2),
               seed=0, progress=False)
