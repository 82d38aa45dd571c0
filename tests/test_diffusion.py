import pytest
import torch
import torch.nn.functional as F

from sdlib.diffusion import DDPMObjective, band_timesteps, ddpm_loss, draw_timesteps, drop_prompts
from sdlib.schedules import NoiseSchedule
from sdlib.unet import UNet, UNetConfig

S = NoiseSchedule.linear(1000)


def test_simple_loss_is_algorithm_1():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(8, 16), groups=4))
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    got = ddpm_loss(model, S, x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)                     # the same random numbers, drawn by hand
    t = torch.randint(1, 1001, (4,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = S.alpha_bar[t].float().reshape(4, 1, 1, 1)
    want = F.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t), eps)
    torch.testing.assert_close(got, want)


def test_prompt_dropout_uses_the_learned_empty_prompt():
    model = UNet(UNetConfig(channels=(8, 16), groups=4, attention=(1,), context_dim=6))
    with torch.no_grad():
        model.null_context.fill_(0.5)
    ctx, mask = torch.randn(3, 4, 6), torch.tensor([[True, True, False, False]] * 3)
    new_ctx, new_mask = drop_prompts(model, ctx, mask, torch.tensor([True, False, True]))
    assert torch.all(new_ctx[0] == 0.5) and torch.equal(new_ctx[1], ctx[1])
    assert new_mask[0].tolist() == [True, False, False, False] and torch.equal(new_mask[1], mask[1])

    seen = []
    encode = lambda batch, generator: (ctx[: len(batch[0])], mask[: len(batch[0])])
    objective = DDPMObjective(S, encode_prompts=encode, p_uncond=1.0)
    original = model.forward
    model.forward = lambda x, t, c=None, m=None: seen.append(c) or original(x, t, c, m)
    objective(model, (torch.zeros(3, 1, 28, 28),), torch.Generator().manual_seed(0))
    assert torch.all(seen[0] == 0.5)                        # p_uncond = 1: every prompt dropped


def test_band_timesteps_puts_frac_of_the_draws_in_the_band():
    p = band_timesteps(1000, 151, 550, 0.5)
    assert p.shape == (1000,) and abs(p.sum().item() - 1) < 1e-6
    torch.testing.assert_close(p[0], torch.tensor(0.5 / 1000))                  # t = 1: outside the band
    torch.testing.assert_close(p[150], torch.tensor(0.5 / 1000 + 0.5 / 400))    # t = 151: inside
    torch.testing.assert_close(p[150:550].sum(), torch.tensor(0.5 + 0.5 * 400 / 1000))
    t = draw_timesteps(S, 20000, torch.Generator().manual_seed(0), "cpu", p)
    assert t.min() >= 1 and t.max() <= 1000
    inside = ((t >= 151) & (t <= 550)).float().mean().item()
    assert abs(inside - 0.7) < 4 * (0.7 * 0.3 / 20000) ** 0.5                 # four standard errors
    for bad in [(0, 10, 0.5), (10, 5, 0.5), (1, 1001, 0.5), (1, 10, 1.0), (1, 10, -0.1)]:
        with pytest.raises(ValueError):
            band_timesteps(1000, *bad)


def test_loss_draws_t_from_t_probs():
    seen = []
    model = lambda x, t, c=None, m=None: seen.append(t) or torch.zeros_like(x)
    only_300 = torch.zeros(1000)
    only_300[299] = 1.0                                                         # index t - 1
    x0 = torch.rand(8, 1, 28, 28) * 2 - 1
    objective = DDPMObjective(S, t_probs=only_300)
    loss = objective(model, (x0,), torch.Generator().manual_seed(0))
    assert seen[0].tolist() == [300] * 8
    g = torch.Generator().manual_seed(0)                     # the same random numbers, drawn by hand
    torch.multinomial(only_300, 8, replacement=True, generator=g)
    torch.testing.assert_close(loss, F.mse_loss(torch.zeros_like(x0), torch.randn(x0.shape, generator=g)))


@pytest.mark.parametrize("bad", [torch.ones(999), torch.ones(1000, dtype=torch.long), -torch.ones(1000),
                                 torch.zeros(1000), torch.full((1000,), float("nan"))])
def test_bad_t_probs_are_refused(bad):
    with pytest.raises(ValueError, match="t_probs"):
        DDPMObjective(S, t_probs=bad)


def test_resuming_with_another_t_distribution_is_refused(tmp_path):
    from sdlib.train import TrainConfig, fit, load_checkpoint
    data = (torch.rand(64, 1, 28, 28) * 2 - 1,)
    config = TrainConfig(steps=4, batch_size=8, warmup=1, checkpoint_every=2, device="cpu", ema_decay=None,
                         autocast=None)
    band = DDPMObjective(S, t_probs=band_timesteps(1000, 150, 550, 0.9))
    path = tmp_path / "band.pt"
    torch.manual_seed(0)
    fit(UNet(UNetConfig(channels=(8, 16), groups=4)), band, data, config, checkpoint=path, progress=False)
    saved = load_checkpoint(path)["objective"]
    assert saved["T"] == 1000 and torch.equal(saved["t_probs"], band.t_probs)
    longer = TrainConfig(**{**config.__dict__, "steps": 6})
    for other in [DDPMObjective(S), DDPMObjective(S, t_probs=band_timesteps(1000, 150, 550, 0.5))]:
        with pytest.raises(RuntimeError, match=r"different training objective \(t_probs differ"):
            fit(UNet(UNetConfig(channels=(8, 16), groups=4)), other, data, longer, checkpoint=path, progress=False)
    resumed = fit(UNet(UNetConfig(channels=(8, 16), groups=4)), band, data, longer, checkpoint=path, progress=False)
    assert resumed.steps == 6 and len(resumed.history["loss"]) == 6          # the same objective resumes


@pytest.mark.parametrize("x0, error, message", [
    (torch.full((2, 1, 28, 28), 255.0), ValueError, r"x0 has values in \[255, 255\].*to_model_range"),
    (torch.full((2, 1, 28, 28), 255, dtype=torch.uint8), TypeError, r"floating-point.*to_model_range\(x\)"),
    (torch.full((2, 1, 28, 28), float("nan")), ValueError, "x0 contains NaN"),
    (torch.zeros(0, 1, 28, 28), ValueError, "x0 is an empty batch"),
])
def test_ddpm_loss_refuses_pixels_nan_and_empty_batches(x0, error, message):
    model = UNet(UNetConfig(channels=(16, 32)))
    with pytest.raises(error, match=message):
        ddpm_loss(model, NoiseSchedule.linear(100), x0, torch.Generator().manual_seed(0))


def test_ddpm_loss_takes_float64_batches_and_checks_its_other_arguments():
    model = UNet(UNetConfig(channels=(16, 32)))
    x0 = torch.rand(2, 1, 28, 28, dtype=torch.float64) * 2 - 1
    assert ddpm_loss(model, NoiseSchedule.linear(100), x0, torch.Generator().manual_seed(0)).isfinite()
    with pytest.raises(TypeError, match="schedule must be a NoiseSchedule"):
        ddpm_loss(model, 100, x0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        ddpm_loss(model, NoiseSchedule.linear(100), x0, 0)
