import importlib

import pytest
import torch

from sdlib import metrics, pretrained
from sdlib.recipes import as_shipped, final_mean
from sdlib.recipes.ddpm import compare_samplers, main as ddpm_main, schedule, timed_samples, training_t_probs
from sdlib.samplers import DDIMSampler
from sdlib.unet import UNet, UNetConfig


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


def test_the_lesson_recipe_draws_t_as_lesson_03_does_and_the_band_only_when_asked():
    from sdlib.recipes.configs.ddpm import LESSON_T_BAND, PRETRAINED_T_BAND, SCHEDULE
    from sdlib.diffusion import band_timesteps
    assert training_t_probs(lesson=True) is None                       # Algorithm 1: t ~ Uniform{1..T}
    assert torch.equal(training_t_probs(lesson=True, band=True), band_timesteps(SCHEDULE["T"], *LESSON_T_BAND))
    assert torch.equal(training_t_probs(lesson=False), band_timesteps(SCHEDULE["T"], *PRETRAINED_T_BAND))
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
