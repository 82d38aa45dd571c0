import importlib

import pytest
import torch

from sdlib import metrics, pretrained
from sdlib.diffusion import DDPMObjective
from sdlib.recipes import as_shipped, final_mean, ship
from sdlib.recipes.ddpm import compare_samplers
from sdlib.recipes.ddpm import main as ddpm_main
from sdlib.recipes.ddpm import schedule, timed_samples, training_t_probs
from sdlib.samplers import DDIMSampler
from sdlib.unet import UNet, UNetConfig


@pytest.mark.slow                # 1,000 DDPM steps
@pytest.mark.filterwarnings("ignore:sampling diverged")     # an untrained U-Net
def test_sampler_comparison_runs_the_samplers_it_names_on_the_same_noises():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(8,), groups=4, patch_size=2)).eval()
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    _, reference = metrics.predict(classifier, torch.rand(64, 1, 28, 28) * 2 - 1)
    rows = compare_samplers(model, classifier, reference, n=8, log=lambda *a: None)
    assert [(r["sampler"], r["steps"]) for r in rows] == [("DDPM", 1000), ("DDIM, eta = 1", 50), ("DDIM, eta = 0", 50)]
    assert all(r["seconds"] >= 0 and 0 <= r["confident"] <= 1 and r["digit_min"] <= r["digit_max"] for r in rows)
    # The deterministic row is exactly DDIM-50 with eta = 0 from seed 0, unclipped.
    x, _ = timed_samples(model, DDIMSampler(schedule(), 50, eta=0.0), 8, seed=0)
    fid = metrics.evaluate_samples(classifier, x, reference).classifier_fid
    assert rows[2]["classifier_fid"] == round(fid, 1)


class _RecordT(torch.nn.Module):
    """A stand-in U-Net that predicts zero noise and keeps every t it is asked about."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, t, context=None, mask=None):
        self.seen.append(t.clone())
        return torch.zeros_like(x)


def drawn_timesteps(lesson: bool, band: bool, steps: int = 40, batch: int = 1000) -> torch.Tensor:
    """The t the recipe's objective draws over `steps` training batches (seeds as fit gives them)."""
    model, objective = _RecordT(), DDPMObjective(schedule(), t_probs=training_t_probs(lesson, band))
    x0 = torch.zeros(batch, 1, 2, 2)
    for step in range(steps):
        objective(model, (x0,), torch.Generator().manual_seed(step))
    return torch.cat(model.seen)


def test_the_lesson_recipe_draws_t_as_lesson_03_says_and_the_band_only_when_asked():
    # Lesson 03 (Algorithm 1): t ~ Uniform{1, ..., 1000}. Appendix 03b's band: 90% of the draws uniform in
    # 150..550, the rest uniform in 1..1000. Checked on 40,000 draws, within five standard errors.
    n = 40_000
    uniform = drawn_timesteps(lesson=True, band=False)
    assert uniform.min() >= 1 and uniform.max() <= 1000 and len(uniform) == n
    for lo, hi in ((1, 100), (150, 550), (901, 1000)):
        p = (hi - lo + 1) / 1000
        share = ((uniform >= lo) & (uniform <= hi)).float().mean().item()
        assert abs(share - p) < 5 * (p * (1 - p) / n) ** 0.5, (lo, hi, share)
    band = drawn_timesteps(lesson=True, band=True)
    p = 0.9 + 0.1 * 401 / 1000
    share = ((band >= 150) & (band <= 550)).float().mean().item()
    assert abs(share - p) < 5 * (p * (1 - p) / n) ** 0.5, share
    with pytest.raises(SystemExit) as exit_info:                       # --band alone is refused before any work
        ddpm_main(["--band"])
    assert exit_info.value.code == 2


@pytest.mark.filterwarnings("ignore:sampling diverged")     # untrained U-Nets
def test_the_flow_table_runs_each_sampler_and_grid_on_the_same_noises():
    from sdlib.flow import EulerSampler, time_of_alpha_bar
    from sdlib.recipes.flow import samplers_table
    from sdlib.samplers import sample

    torch.manual_seed(0)
    ddpm = UNet(UNetConfig(channels=(8,), groups=4, patch_size=2)).eval()
    flow = UNet(UNetConfig(channels=(8,), groups=4, patch_size=2, time_input="continuous")).eval()
    classifier = pretrained.load_pretrained("classifier", device="cpu")
    _, reference = metrics.predict(classifier, torch.rand(64, 1, 28, 28) * 2 - 1)
    rows = samplers_table(flow, ddpm, classifier, reference, steps=(2,), n=8, log=lambda *a: None)
    assert [(r["sampler"], r["grid"], r["nfe"]) for r in rows] == [
        ("DDIM", "DDIM's", 2), ("Euler", "even", 2), ("Euler", "DDIM's", 2), ("Euler", "shift 3", 2), ("Heun", "even", 3)]
    # The "DDIM's" Euler row steps through the flow times of DDIM's noise levels, from the same noises (seed 0).
    times = time_of_alpha_bar(schedule().alpha_bar[DDIMSampler(schedule(), 2).timesteps]).tolist()
    x = sample(flow, EulerSampler(2), (8, 1, 28, 28), generator=torch.Generator().manual_seed(0), progress=False,
               timesteps=times).clamp(-1, 1)
    assert rows[2]["classifier_fid"] == round(metrics.evaluate_samples(classifier, x, reference).classifier_fid, 1)


@pytest.mark.parametrize("name", ["classifier", "ddpm", "vae", "clip", "text_ddpm", "latent_ddpm", "guidance_premises",
                                  "noisy_classifier", "flow"])
def test_every_recipe_answers_help(name, capsys):
    recipe = importlib.import_module(f"sdlib.recipes.{name}")
    with pytest.raises(SystemExit) as stop:
        recipe.main(["--help"])
    assert stop.value.code == 0
    assert f"python -m sdlib.recipes.{name}" in capsys.readouterr().out


def test_as_shipped_measures_the_float16_weights_that_are_saved():
    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(8,), groups=4, patch_size=2)).train()
    model.conv_in.weight.data[0, 0, 0, 0] = 1 + 2 ** -12                 # not representable in float16
    shipped = as_shipped(model)
    assert not shipped.training and shipped.conv_in.weight.device.type == "cpu"
    assert all(torch.equal(v, v.half().float()) for v in shipped.state_dict().values() if v.is_floating_point())
    assert shipped.conv_in.weight[0, 0, 0, 0].item() == 1.0


def test_final_mean_averages_the_last_values_of_a_history():
    history = {"loss": [10.0] * 5 + [1.0, 2.0, 3.0], "kl": [4.0]}
    assert final_mean(history, last=3) == 2.0
    assert final_mean(history, "kl") == 4.0                               # a history shorter than `last`
    assert final_mean({"loss": [1 / 3]}, digits=2) == 0.33


def test_ship_stops_an_interrupted_run_and_saves_the_measured_weights(tmp_path, capsys):
    from sdlib.train import TrainConfig, fit

    torch.manual_seed(0)
    model = UNet(UNetConfig(channels=(8,), groups=4, patch_size=2))
    data = (torch.rand(16, 1, 28, 28) * 2 - 1,)
    result = fit(model, DDPMObjective(schedule()), data, TrainConfig(steps=3, batch_size=8, warmup=1), progress=False)
    settings = dict(name="tiny", kind="unet", config=model.config.to_dict(), recipe="a test", directory=tmp_path)
    measured = []
    result.interrupted = True
    assert ship(result, lambda net: measured.append(net) or {}, **settings) == 1
    assert measured == [] and not (tmp_path / "tiny.pt").exists()           # nothing measured, nothing written
    result.interrupted = False
    assert ship(result, lambda net: {"score": 0.5, "steps": 99}, **settings, save=False) == 0
    assert not (tmp_path / "tiny.pt").exists()                              # a lesson-size run: measured only
    assert ship(result, lambda net: {"score": 0.5}, **settings) == 0
    entry = pretrained.entry("tiny", tmp_path)
    assert entry["metrics"]["score"] == 0.5 and entry["metrics"]["steps"] == 3
    assert entry["metrics"]["final_loss"] == final_mean(result.history)
    loaded = pretrained.load_pretrained("tiny", device="cpu", directory=tmp_path)
    shipped = as_shipped(result.best)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), shipped.state_dict().values()))
    assert "'score': 0.5" in capsys.readouterr().out
