import torch

from sdlib import metrics, pretrained
from sdlib.recipes.ddpm import compare_samplers, schedule, timed_samples
from sdlib.samplers import DDIMSampler
from sdlib.unet import UNet, UNetConfig


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


def test_shipped_ddpm_was_trained_with_the_recipes_settings():
    # The manifest records what the shipped weights were trained with; changing the recipe's constants
    # without retraining would make the docs and lesson 03 describe a model that does not exist.
    from sdlib.recipes.ddpm import PRETRAINED_T_BAND, PRETRAINED_UNET, SCHEDULE
    info = pretrained.entry("ddpm")
    assert info["extra"]["t_band"] == list(PRETRAINED_T_BAND)
    assert info["extra"]["schedule"] == SCHEDULE
    as_json = lambda d: {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    assert info["config"] == as_json(PRETRAINED_UNET.to_dict())
    assert info["metrics"]["steps"] == 20000
