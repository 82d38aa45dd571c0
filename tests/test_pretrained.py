import json
import shutil

import pytest
import torch

from sdlib import pretrained
from sdlib.schedules import NoiseSchedule


def test_manifest_describes_every_file_and_the_total_is_small():
    manifest = pretrained.read_manifest()
    assert "classifier" in manifest
    total = 0
    for name, info in manifest.items():
        path = pretrained.WEIGHTS_DIR / info["file"]
        assert path.stat().st_size == info["bytes"] and pretrained.sha256(path) == info["sha256"], name
        assert info["recipe"].startswith("python -m sdlib.recipes."), name
        assert info["metrics"], name
        total += info["bytes"]
    assert total < 25 * 2 ** 20, f"pretrained weights take {total / 2**20:.1f} MB; the budget is 25 MB"


def test_every_model_loads_with_weights_only():
    for name in pretrained.read_manifest():
        model = pretrained.load_pretrained(name, device="cpu")
        assert not model.training


@pytest.fixture
def copy_of_weights(tmp_path):
    shutil.copy(pretrained.WEIGHTS_DIR / "manifest.json", tmp_path)
    shutil.copy(pretrained.WEIGHTS_DIR / "classifier.pt", tmp_path)
    return tmp_path


def test_damaged_weights_are_refused_with_advice(copy_of_weights):
    file = copy_of_weights / "classifier.pt"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF                                   # one flipped byte
    file.write_bytes(bytes(data))
    with pytest.raises(pretrained.WeightsError, match="SHA-256.*python -m sdlib.recipes.classifier"):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)


def test_truncated_and_missing_weights_are_refused(copy_of_weights):
    file = copy_of_weights / "classifier.pt"
    file.write_bytes(file.read_bytes()[:1000])
    with pytest.raises(pretrained.WeightsError, match="truncated"):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)
    file.unlink()
    with pytest.raises(pretrained.WeightsError, match="missing"):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)
    with pytest.raises(pretrained.WeightsError, match="no pretrained model called 'nope'.*classifier"):
        pretrained.load_pretrained("nope", directory=copy_of_weights)


def test_saving_round_trips_in_half_precision(tmp_path):
    from sdlib.metrics import ClassifierConfig, DigitClassifier

    model = DigitClassifier().eval()
    entry = pretrained.save_pretrained("tiny", model, kind="classifier", config=ClassifierConfig().__dict__,
                                       recipe="python -m sdlib.recipes.test", metrics={"x": 1}, directory=tmp_path)
    assert entry["dtype"] == "float16"
    loaded = pretrained.load_pretrained("tiny", device="cpu", directory=tmp_path)
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=2e-2)


def test_later_metrics_join_the_entry_and_leave_the_weights_alone(tmp_path):
    from sdlib.metrics import ClassifierConfig, DigitClassifier

    entry = pretrained.save_pretrained("tiny", DigitClassifier(), kind="classifier", config=ClassifierConfig().__dict__,
                                       recipe="python -m sdlib.recipes.test", metrics={"x": 1}, directory=tmp_path)
    updated = pretrained.record_metrics("tiny", {"slow": [1, 2]}, directory=tmp_path)
    assert updated["metrics"] == {"x": 1, "slow": [1, 2]}
    assert pretrained.entry("tiny", tmp_path) == updated and updated["sha256"] == entry["sha256"]
    pretrained.load_pretrained("tiny", device="cpu", directory=tmp_path)          # the hash check still passes
    with pytest.raises(pretrained.WeightsError, match="no pretrained model called 'other'"):
        pretrained.record_metrics("other", {}, directory=tmp_path)


@pytest.fixture
def copy_of_ddpm(tmp_path):
    shutil.copy(pretrained.WEIGHTS_DIR / "manifest.json", tmp_path)
    shutil.copy(pretrained.WEIGHTS_DIR / "ddpm.pt", tmp_path)
    return tmp_path


def edit_manifest(directory, change):
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_manifest_that_is_not_json_names_the_file_the_position_and_the_fix(copy_of_weights):
    path = copy_of_weights / "manifest.json"
    path.write_text(path.read_text()[:200])                          # cut short, as by a bad merge or full disk
    with pytest.raises(pretrained.WeightsError, match=r"manifest.json is not valid JSON \(.*: line \d+, column \d+.*"
                                                      r"git checkout sdlib/weights/manifest.json.*reinstall"):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)
    path.write_text("[]")
    with pytest.raises(pretrained.WeightsError, match="must hold a JSON object of model entries, got a list"):
        pretrained.read_manifest(copy_of_weights)


@pytest.mark.parametrize("key", ["sha256", "file", "bytes", "kind", "config"])
def test_entry_missing_a_key_is_refused_by_name(copy_of_weights, key):
    edit_manifest(copy_of_weights, lambda m: m["classifier"].pop(key))
    with pytest.raises(pretrained.WeightsError, match=f"entry for 'classifier' in .*manifest.json lacks '{key}'"):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)


def test_entry_with_a_value_of_the_wrong_type_is_refused(copy_of_weights):
    edit_manifest(copy_of_weights, lambda m: m["classifier"].update(config=[32, 64]))
    with pytest.raises(pretrained.WeightsError, match=r"'config' = \[32, 64\], which should be a JSON object"):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)


def test_unknown_config_key_is_named_with_the_keys_the_config_accepts(copy_of_weights):
    edit_manifest(copy_of_weights, lambda m: m["classifier"]["config"].update(width=3))
    with pytest.raises(pretrained.WeightsError, match=r"'classifier' \(kind 'classifier'\).*unknown key\(s\) 'width'; "
                                                      "a classifier config accepts: channels, features, dropout"):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)


def test_config_the_builder_refuses_names_the_model_and_the_kind(copy_of_ddpm):
    edit_manifest(copy_of_ddpm, lambda m: m["ddpm"]["config"].update(groups=7))   # 32 and 64 are not multiples of 7
    with pytest.raises(pretrained.WeightsError, match="the unet builder does not accept the config of pretrained "
                                                      "model 'ddpm'.*multiple of groups"):
        pretrained.load_pretrained("ddpm", directory=copy_of_ddpm)
    edit_manifest(copy_of_ddpm, lambda m: m["ddpm"].update(kind="transformer"))
    with pytest.raises(pretrained.WeightsError, match="kind 'transformer', which this sdlib cannot build "
                                                      r"\(it builds: classifier, unet, noisy_classifier, vae, clip\)"):
        pretrained.load_pretrained("ddpm", directory=copy_of_ddpm)


def test_unknown_model_and_missing_manifest_name_what_there_is(copy_of_weights, tmp_path_factory):
    with pytest.raises(pretrained.WeightsError, match=r"no pretrained model called 'nope' \(known: classifier, clip, "):
        pretrained.load_pretrained("nope", directory=copy_of_weights)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(pretrained.WeightsError, match="no pretrained model called 'ddpm': there is no manifest at"):
        pretrained.load_pretrained("ddpm", directory=empty)


def test_weights_of_another_config_are_refused_naming_the_tensors(copy_of_weights):
    # The file still passes its hash check: only the config in the manifest is wrong.
    edit_manifest(copy_of_weights, lambda m: m["classifier"]["config"].update(features=64))
    with pytest.raises(pretrained.WeightsError, match=r"classifier.pt was saved from a model of another configuration "
                                                      r"\(\d+ of another shape \(saved vs this model\): \S+ \(128, "):
        pretrained.load_pretrained("classifier", directory=copy_of_weights)


def test_schedule_comes_from_the_manifest():
    for name in ("ddpm", "text_ddpm", "latent_ddpm"):
        recorded = pretrained.entry(name)["extra"]["schedule"]
        s = pretrained.schedule(name)
        assert isinstance(s, NoiseSchedule) and s.name == recorded["name"] and s.T == recorded["T"]
    torch.testing.assert_close(pretrained.schedule("ddpm").beta, NoiseSchedule.linear(1000).beta)
    with_schedule = (r"ddpm, latent_ddpm, noisy_classifier, text_ddpm, text_ddpm_short_learned, "
                     r"text_ddpm_short_no_dropout, text_ddpm_short_text, text_ddpm_short_zero")
    with pytest.raises(pretrained.WeightsError, match=r"'classifier' \(kind 'classifier'\) records no noise schedule.*"
                                                      r"only models of noisy images do \(here: " + with_schedule + r"\)"):
        pretrained.schedule("classifier")


def test_schedule_arguments_are_passed_and_checked(copy_of_ddpm):
    schedule = lambda spec: edit_manifest(copy_of_ddpm, lambda m: m["ddpm"]["extra"].update(schedule=spec))
    schedule({"name": "cosine", "T": 500, "s": 0.01})
    torch.testing.assert_close(pretrained.schedule("ddpm", copy_of_ddpm).beta, NoiseSchedule.cosine(500, s=0.01).beta)
    schedule({"name": "sigmoid", "T": 1000})
    with pytest.raises(pretrained.WeightsError, match="called 'sigmoid'; known schedules: linear, cosine"):
        pretrained.schedule("ddpm", copy_of_ddpm)
    schedule({"name": "linear", "T": 1000, "beta_max": 0.02})
    with pytest.raises(pretrained.WeightsError, match=r"unknown argument\(s\) 'beta_max'; a linear schedule "
                                                      "accepts: T, beta_start, beta_end"):
        pretrained.schedule("ddpm", copy_of_ddpm)
    schedule({"name": "linear", "T": 1000, "beta_start": 0.5, "beta_end": 0.1})
    with pytest.raises(pretrained.WeightsError, match="cannot be built .*beta_start <= beta_end"):
        pretrained.load_pretrained("ddpm", device="cpu", directory=copy_of_ddpm)


def test_unet_knows_the_schedule_it_was_trained_with(copy_of_ddpm):
    assert pretrained.load_pretrained("ddpm", device="cpu").schedule.name == "linear"
    edit_manifest(copy_of_ddpm, lambda m: m["ddpm"]["extra"].update(schedule={"name": "cosine", "T": 1000}))
    assert pretrained.load_pretrained("ddpm", device="cpu", directory=copy_of_ddpm).schedule.name == "cosine"
    edit_manifest(copy_of_ddpm, lambda m: m["ddpm"].pop("extra"))
    assert pretrained.load_pretrained("ddpm", device="cpu", directory=copy_of_ddpm).schedule is None
