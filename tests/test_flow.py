import json
import math

import pytest
import torch

from sdlib import pretrained
from sdlib.flow import (EulerSampler, FlowMatchingObjective, HeunSampler, draw_times, eps_from_velocity, flow_loss,
                        interpolate, shifted_times, time_of_alpha_bar, velocity_target, x0_from_velocity)
from sdlib.samplers import ClassifierFreeGuidance, sample
from sdlib.schedules import NoiseSchedule
from sdlib.train import TrainConfig, fit
from sdlib.unet import UNet, UNetConfig, timestep_embedding

TINY = UNetConfig(channels=(8, 16), image_size=8, groups=4, time_input="continuous")
TINY_TEXT = UNetConfig(channels=(8, 16), image_size=8, groups=4, attention=(1,), context_dim=8, heads=2,
                       time_input="continuous")


def text_flow_unet() -> UNet:
    """A tiny text-conditioned flow U-Net in which the prompt acts (a new attention block's output projection
    starts at zero), with an empty prompt unlike the prompts."""
    torch.manual_seed(0)
    model = UNet(TINY_TEXT)
    with torch.no_grad():
        model.null_context.normal_()
        for block in model.modules():
            if hasattr(block, "proj_out"):
                torch.nn.init.normal_(block.proj_out.weight, std=0.3)
    return model


# -- the path and the loss ------------------------------------------------------------------------

def test_the_loss_regresses_on_eps_minus_x0_computed_by_hand():
    x0 = torch.tensor([[1.0, -1.0], [0.0, 0.5]]).reshape(2, 1, 1, 2)
    eps = torch.tensor([[0.5, 2.0], [-1.0, 1.0]]).reshape(2, 1, 1, 2)
    t = torch.tensor([0.25, 1.0])
    seen = {}

    def model(xt, t, context=None, mask=None):
        seen["xt"], seen["t"] = xt, t
        return torch.tensor([[0.0, 1.0], [0.0, 0.0]]).reshape(2, 1, 1, 2)

    loss = flow_loss(model, x0, t, eps)
    # x_t = 0.75·x0 + 0.25·eps = (0.875, -0.25); at t = 1, x_t = eps = (-1, 1)
    torch.testing.assert_close(seen["xt"].flatten(), torch.tensor([0.875, -0.25, -1.0, 1.0]))
    torch.testing.assert_close(seen["t"], t)
    # v = eps - x0 = (-0.5, 3) and (-1, 0.5); squared errors 0.25, 4, 1, 0.25 -> mean 5.5 / 4
    torch.testing.assert_close(velocity_target(x0, eps).flatten(), torch.tensor([-0.5, 3.0, -1.0, 0.5]))
    assert loss.item() == pytest.approx(5.5 / 4)


def test_interpolate_starts_at_the_data_and_ends_at_the_noise():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.randn(3, 1, 4, 4, generator=g)
    torch.testing.assert_close(interpolate(x0, eps, 0.0), x0)
    torch.testing.assert_close(interpolate(x0, eps, 1), eps)
    mixed = interpolate(x0, eps, torch.tensor([0.0, 1.0, 0.5]))               # one t per image
    torch.testing.assert_close(mixed, torch.stack([x0[0], eps[1], (x0[2] + eps[2]) / 2]))


def test_a_velocity_gives_back_the_clean_image_and_the_noise_exactly():
    g = torch.Generator().manual_seed(1)
    x0 = (torch.rand(5, 1, 3, 3, generator=g, dtype=torch.float64) * 2 - 1)
    eps = torch.randn(5, 1, 3, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)
    xt, v = interpolate(x0, eps, t), velocity_target(x0, eps)
    torch.testing.assert_close(x0_from_velocity(xt, v, t), x0, atol=1e-12, rtol=0)
    torch.testing.assert_close(eps_from_velocity(xt, v, t), eps, atol=1e-12, rtol=0)
    wrong = v + 0.1                                              # any other velocity points elsewhere
    assert not torch.allclose(x0_from_velocity(xt, wrong, t)[1:], x0[1:])


# -- times ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("m, s", [(0.0, 1.0), (0.5, 0.6), (-1.0, 2.0)])
def test_logit_normal_times_have_a_normal_logit_with_mean_m_and_std_s(m, s):
    t = draw_times(200_000, "logit_normal", torch.Generator().manual_seed(0), m=m, s=s).double()
    assert t.dtype == torch.float64 and 0 < t.min() and t.max() < 1
    logit = torch.log(t / (1 - t))
    assert logit.mean().item() == pytest.approx(m, abs=0.02)
    assert logit.std().item() == pytest.approx(s, rel=0.02)


def test_uniform_times_and_reproducibility():
    t = draw_times(100_000, "uniform", torch.Generator().manual_seed(0))
    assert t.shape == (100_000,) and 0 <= t.min() and t.max() < 1
    assert t.mean().item() == pytest.approx(0.5, abs=0.01) and t.var().item() == pytest.approx(1 / 12, abs=0.002)
    for kind in ("uniform", "logit_normal"):
        a = draw_times(8, kind, torch.Generator().manual_seed(3))
        assert torch.equal(a, draw_times(8, kind, torch.Generator().manual_seed(3)))
        assert not torch.equal(a, draw_times(8, kind, torch.Generator().manual_seed(4)))


# -- samplers -------------------------------------------------------------------------------------

def test_one_euler_step_on_a_straight_path_is_exact():
    g = torch.Generator().manual_seed(2)
    x0, x1 = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1, torch.randn(3, 1, 4, 4, generator=g)
    constant = lambda x, t: x1 - x0                                # noqa: E731  the path's velocity, v = eps - x0
    torch.testing.assert_close(sample(constant, EulerSampler(1), x_T=x1, progress=False), x0)
    torch.testing.assert_close(sample(constant, HeunSampler(1), x_T=x1, progress=False), x0)
    out = EulerSampler(1).step(x1 - x0, 1.0, x1)
    torch.testing.assert_close(out.x_prev, x0)
    torch.testing.assert_close(out.x0_pred, x0)


def test_heun_is_second_order_and_euler_first_order():
    # dx/dt = a·t·x, so x(0) = x(1)·exp(-a/2); the velocity depends on t, so the corrector must use t_prev
    a = 1.5
    model = lambda x, t: a * t.to(x.dtype).view(-1, 1, 1, 1) * x            # noqa: E731
    x1 = torch.full((1, 1, 1, 1), 0.8, dtype=torch.float64)
    exact = 0.8 * math.exp(-a / 2)

    def error(sampler):
        return abs(sample(model, sampler, x_T=x1, progress=False).item() - exact)

    for steps in (8, 16):
        assert 3 <= error(HeunSampler(steps)) / error(HeunSampler(2 * steps)) <= 5
        assert 1.7 <= error(EulerSampler(steps)) / error(EulerSampler(2 * steps)) <= 2.3
    assert error(HeunSampler(16)) < error(EulerSampler(31)) / 10           # the same network evaluations


def test_time_grid_and_network_evaluations():
    assert EulerSampler(4).timesteps == [1.0, 0.75, 0.5, 0.25]
    assert (EulerSampler(10).nfe, HeunSampler(10).nfe, HeunSampler(1).nfe) == (10, 19, 1)
    for sampler in (EulerSampler(5), HeunSampler(5)):
        calls = []

        def model(x, t):
            calls.append(t.clone())
            return -x

        x, record = sample(model, sampler, (3, 1, 2, 2), seed=0, progress=False, trajectory=True)
        assert len(calls) == sampler.nfe and all(t.dtype == torch.float32 and t.shape == (3,) for t in calls)
        assert record.t == sampler.timesteps and calls[0][0] == 1.0
    assert [c[0].item() for c in calls] == pytest.approx([1.0, 0.8, 0.8, 0.6, 0.6, 0.4, 0.4, 0.2, 0.2])


def test_sd3_time_shift_computed_by_hand():
    assert shifted_times(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    # t = s·u / (1 + (s − 1)·u) with s = 3: u = 0.75 -> 2.25/3 = 0.9, u = 0.5 -> 1.5/2 = 0.75, u = 0.25 -> 0.75/1.5
    assert shifted_times(4, shift=3.0) == pytest.approx([1.0, 0.9, 0.75, 0.5, 0.0])
    sampler = EulerSampler(4, shift=3.0)
    assert sampler.timesteps == pytest.approx([1.0, 0.9, 0.75, 0.5]) and sampler.nfe == 4
    assert "shift 3" in repr(sampler) and "shift" not in repr(EulerSampler(4))
    grid = shifted_times(50, shift=0.5)
    assert all(a > b for a, b in zip(grid, grid[1:])) and (grid[0], grid[-1]) == (1.0, 0.0)
    seen = []
    sample(lambda x, t: seen.append(t[0].item()) or -x, HeunSampler(4, shift=3.0), (2, 1, 2, 2), seed=0,
           progress=False)
    assert seen == pytest.approx([1.0, 0.9, 0.9, 0.75, 0.75, 0.5, 0.5])     # the corrector at the next time


def test_the_flow_time_of_a_ddpm_noise_level_is_equally_noisy():
    schedule = NoiseSchedule.linear(1000)
    t = time_of_alpha_bar(schedule.alpha_bar)
    assert t[0] == 0 and bool((t[1:] > t[:-1]).all()) and t[-1] < 1
    ab = 0.36                                   # sqrt(1 − ᾱ)/sqrt(ᾱ) = 0.8/0.6 = 4/3, so t = (4/3)/(7/3) = 4/7
    assert time_of_alpha_bar(torch.tensor([ab])).item() == pytest.approx(4 / 7)
    x0, eps = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    for step in (10, 300, 900):                 # the same image up to a scale
        a = schedule.alpha_bar[step]
        torch.testing.assert_close(interpolate(x0, eps, t[step].item()),
                                   schedule.add_noise(x0, eps, step) / (a.sqrt() + (1 - a).sqrt()))


def test_same_seed_same_images_whatever_the_batch_size():
    model = lambda x, t: 0.1 * x - t.view(-1, 1, 1, 1)               # noqa: E731
    for sampler in (EulerSampler(4), HeunSampler(3)):
        whole = sample(model, sampler, (4, 1, 3, 3), seed=7, progress=False)
        assert torch.equal(whole, sample(model, sampler, (4, 1, 3, 3), seed=7, batch_size=3, progress=False))
        assert torch.equal(whole[:1], sample(model, sampler, (1, 1, 3, 3), seed=7, progress=False))
        assert not torch.equal(whole, sample(model, sampler, (4, 1, 3, 3), seed=8, progress=False))


def test_a_flow_unet_samples_with_a_generator_and_a_ddpm_unet_is_refused():
    torch.manual_seed(0)
    flow = UNet(UNetConfig(channels=(8, 16), groups=4, time_input="continuous")).eval()
    a = sample(flow, EulerSampler(10), (2, 1, 28, 28), generator=torch.Generator().manual_seed(0), progress=False)
    b = sample(flow, EulerSampler(10), (2, 1, 28, 28), generator=torch.Generator().manual_seed(0), progress=False)
    assert a.shape == (2, 1, 28, 28) and torch.equal(a, b)
    ddpm = UNet(UNetConfig(channels=(8, 16), image_size=8, groups=4))
    with pytest.raises(ValueError, match="integer time steps 0..1000 .* DDIMSampler"):
        sample(ddpm, HeunSampler(2), (1, 1, 8, 8), seed=0, progress=False)
    from sdlib.samplers import DDIMSampler
    from sdlib.schedules import NoiseSchedule
    with pytest.raises(ValueError, match=r"continuous times t in \[0, 1\] .*EulerSampler or HeunSampler"):
        sample(flow, DDIMSampler(NoiseSchedule.linear(1000), 2), (1, 1, 28, 28), seed=0, progress=False)


def test_classifier_free_guidance_combines_velocities_on_a_text_flow_unet():
    model = text_flow_unet().eval()
    context, x, t = torch.randn(2, 3, 8), torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.9])
    guided = ClassifierFreeGuidance(model, context, w=3.0)
    with torch.no_grad():
        v_cond, v_uncond = model(x, t, context), model(x, t)
        assert not torch.allclose(v_cond, v_uncond, atol=1e-3)
        torch.testing.assert_close(guided(x, t), v_uncond + 3.0 * (v_cond - v_uncond), atol=1e-5, rtol=1e-5)
    for sampler in (EulerSampler(3), HeunSampler(3)):
        out = sample(guided, sampler, (2, 1, 8, 8), seed=0, batch_size=1, progress=False)
        assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()


# -- the U-Net with continuous time ---------------------------------------------------------------

def test_a_continuous_unet_embeds_t_as_the_discrete_step_t_times_max_t():
    torch.manual_seed(0)
    discrete = UNet(UNetConfig(channels=(8, 16), image_size=8, groups=4)).eval()
    continuous = UNet(TINY).eval()
    continuous.load_state_dict(discrete.state_dict())           # the same weights: only the time input differs
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(continuous(x, torch.tensor([0.0, 0.25, 1.0])),
                                   discrete(x, torch.tensor([0, 250, 1000])), atol=1e-5, rtol=1e-5)
        assert continuous(x, 0.5).shape == x.shape                     # one number for the whole batch
        assert not torch.allclose(continuous(x, 0.1), continuous(x, 0.9))
    torch.testing.assert_close(timestep_embedding(torch.tensor([0.25]) * 1000, 8),
                               timestep_embedding(torch.tensor([250]), 8))


def test_a_discrete_unet_accepts_and_refuses_what_it_did_before():
    unet = UNet(UNetConfig(channels=(8, 16), image_size=8, groups=4))
    x = torch.randn(2, 1, 8, 8)
    assert unet(x, torch.tensor([0, 1000])).shape == x.shape and unet(x, 7).shape == x.shape
    with pytest.raises(TypeError, match="integer time steps"):
        unet(x, torch.tensor([0.5, 0.25]))
    with pytest.raises(ValueError, match=r"\[0, 1000\]"):
        unet(x, torch.tensor([0, 1001]))


@pytest.mark.parametrize("t, error, message", [
    (torch.tensor([0.5, 1.5]), ValueError, r"must lie in \[0, 1\] .* got values in \[0.5, 1.5\]"),
    (-0.1, ValueError, r"must lie in \[0, 1\]"),
    (torch.tensor([500, 10]), ValueError, r"integer time steps 0..T of a discrete-time model"),
    (torch.tensor([0.5, float("nan")]), ValueError, r"NaN values: expected finite times in \[0, 1\]"),
    (torch.tensor([0.5, float("inf")]), ValueError, "infinite"),
    (torch.zeros(2, 1), ValueError, r"shape \(B,\), one time in \[0, 1\] per image, got shape \(2, 1\)"),
    (torch.zeros(3), ValueError, "3 entries but the batch has 2 images"),
    (True, TypeError, "got a bool"),
    ("0.5", TypeError, "float time in"),
])
def test_bad_times_for_a_continuous_unet_say_what_is_expected(t, error, message):
    with pytest.raises(error, match=message):
        UNet(TINY)(torch.zeros(2, 1, 8, 8), t)


def test_a_continuous_config_round_trips_and_the_default_is_unchanged(tmp_path):
    assert UNetConfig().time_input == "discrete"
    with pytest.raises(ValueError, match="time_input must be one of 'discrete', 'continuous', got 'float'"):
        UNetConfig(time_input="float")
    again = json.loads(json.dumps(TINY_TEXT.to_dict()))
    assert UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in again.items()}) == TINY_TEXT
    torch.manual_seed(0)
    model = UNet(TINY).eval()
    pretrained.save_pretrained("tiny_flow", model, kind="unet", config=TINY.to_dict(), recipe="test",
                               metrics={}, half=False, directory=tmp_path)
    loaded = pretrained.load_pretrained("tiny_flow", device="cpu", directory=tmp_path)
    assert loaded.config == TINY
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, torch.tensor([0.2, 0.7])), model(x, torch.tensor([0.2, 0.7])))
    ddpm = pretrained.load_pretrained("ddpm", device="cpu")             # a shipped model's config has no time_input
    assert ddpm.config.time_input == "discrete" and ddpm(torch.zeros(1, 1, 28, 28), 500).shape == (1, 1, 28, 28)


# -- training -------------------------------------------------------------------------------------

def test_the_objective_trains_a_unet_with_fit():
    torch.manual_seed(0)
    x0 = torch.rand(32, 1, 8, 8) * 2 - 1
    config = TrainConfig(steps=3, batch_size=8, warmup=1, checkpoint_every=None, ema_decay=None, device="cpu")
    for objective in (FlowMatchingObjective(), FlowMatchingObjective(distribution="logit_normal", m=0.5, s=0.8)):
        result = fit(UNet(TINY), objective, (x0,), config, progress=False)
        assert len(result.history["loss"]) == 3 and all(math.isfinite(v) for v in result.history["loss"])
    assert FlowMatchingObjective(distribution="logit_normal").settings() == {
        "objective": "flow_matching", "distribution": "logit_normal", "m": 0.0, "s": 1.0, "p_uncond": 0.0}


def test_the_loss_decreases_on_a_fixed_problem():
    torch.manual_seed(0)
    x0 = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8).expand(16, 1, 8, 8).contiguous()   # one image, repeated
    config = TrainConfig(steps=30, batch_size=16, lr=5e-3, warmup=1, checkpoint_every=None, ema_decay=None,
                         device="cpu", lr_schedule="constant")
    loss = fit(UNet(TINY), FlowMatchingObjective(), (x0,), config, progress=False).history["loss"]
    assert sum(loss[-5:]) / 5 < 0.5 * sum(loss[:5]) / 5


def test_prompts_and_their_dropout_in_the_objective():
    torch.manual_seed(0)
    x0, labels = torch.rand(8, 1, 8, 8) * 2 - 1, torch.arange(8) % 2
    table_a, table_b = torch.randn(2, 2, 8), torch.randn(2, 2, 8)      # two "text encoders": 2 tokens per prompt
    encode_a = lambda batch, g: (table_a[batch[1]], None)            # noqa: E731
    encode_b = lambda batch, g: (table_b[batch[1]], None)            # noqa: E731
    model = text_flow_unet()

    def loss(encode, p_uncond):
        return FlowMatchingObjective(encode, p_uncond)(model, (x0, labels), torch.Generator().manual_seed(5)).item()

    assert loss(encode_a, 0.0) != loss(encode_b, 0.0)                  # the prompts reach the model
    assert loss(encode_a, 1.0) == loss(encode_b, 1.0)                  # every prompt dropped: the empty prompt
    config = TrainConfig(steps=2, batch_size=4, warmup=1, checkpoint_every=None, ema_decay=None, device="cpu")
    result = fit(model, FlowMatchingObjective(encode_a, p_uncond=0.5), (x0, labels), config, progress=False)
    assert len(result.history["loss"]) == 2


# -- bad inputs -----------------------------------------------------------------------------------

X = torch.zeros(1, 1, 2, 2)


@pytest.mark.parametrize("make, error, message", [
    (lambda: EulerSampler(0), ValueError, "steps must be at least 1, got 0"),
    (lambda: HeunSampler(-2), ValueError, "steps must be at least 1"),
    (lambda: EulerSampler(2.5), TypeError, "steps must be an int, got float"),
    (lambda: HeunSampler(True), TypeError, "steps must be an int, got bool"),
    (lambda: EulerSampler(4).step(X, 0.6, X), ValueError, "t=0.6 is not one of this sampler's 4 times"),
    (lambda: EulerSampler(4).step(X, 0.5, X, t_prev=0.75), ValueError, "t_prev must be below t"),
    (lambda: EulerSampler(4).step(X, 1.5, X, t_prev=0.5), ValueError, r"t must lie in \[0, 1\]"),
    (lambda: EulerSampler(4).step(X, 1.0, torch.zeros(1, 1, 2, 3)), ValueError, "same shape"),
    (lambda: HeunSampler(4).step(X, 1.0, X), ValueError, "pass model="),
    (lambda: draw_times(4, "gaussian"), ValueError, "one of 'uniform', 'logit_normal', got 'gaussian'"),
    (lambda: draw_times(4, "logit_normal", s=0.0), ValueError, "s .* must be positive"),
    (lambda: draw_times(4, "logit_normal", m=float("nan")), ValueError, "m .* must be a finite number"),
    (lambda: draw_times(0), ValueError, "n must be at least 1"),
    (lambda: draw_times(4, generator=3), TypeError, r"torch.Generator\(\).manual_seed\(seed\)"),
    (lambda: FlowMatchingObjective(distribution="lognorm"), ValueError, "one of 'uniform', 'logit_normal'"),
    (lambda: FlowMatchingObjective(p_uncond=1.5), ValueError, r"p_uncond must lie in \[0, 1\]"),
    (lambda: interpolate(X, torch.zeros(1, 1, 2, 3), 0.5), ValueError, "same shape"),
    (lambda: interpolate(X, X, torch.tensor([0.5, 0.5])), ValueError, "2 entries but the batch has 1"),
    (lambda: EulerSampler(4, shift=0), ValueError, "shift must be positive"),
    (lambda: HeunSampler(4, shift=-1.0), ValueError, "shift must be positive .*, got -1"),
    (lambda: EulerSampler(4, shift=float("inf")), ValueError, "shift must be a finite number"),
    (lambda: time_of_alpha_bar(torch.tensor([0.5, 0.0])), ValueError, r"alpha_bar must lie in \(0, 1\]"),
])
def test_bad_inputs_say_what_is_expected(make, error, message):
    with pytest.raises(error, match=message):
        make()
