import shutil

import pytest
import torch

from sdlib import pretrained


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
