import shutil
import urllib.error

import pytest
import torch
import torchvision
from helpers import mnist_folder
from torchvision import transforms

from sdlib import data


@pytest.fixture(scope="module")
def folder():
    return mnist_folder()


@pytest.fixture(scope="module")
def test_set(folder, tmp_path_factory):
    return data.load_mnist("test", local_dir=folder, root=tmp_path_factory.mktemp("root"))


def test_shapes_range_and_labels(test_set):
    assert len(test_set) == 10_000
    assert test_set.images.shape == (10_000, 1, 28, 28) and test_set.images.dtype == torch.float32
    assert test_set.images.min() == -1.0 and test_set.images.max() == 1.0
    assert test_set.labels.dtype == torch.int64 and set(test_set.labels.tolist()) == set(range(10))


def test_scaling_equals_torchvision_transforms(folder, tmp_path, test_set):
    ds = data.mnist_torchvision(train=False, local_dir=folder, root=tmp_path)
    to_model = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    for i in [0, 1, 1234, 9999]:
        image, label = ds[i]
        torch.testing.assert_close(test_set.images[i], to_model(image))
        assert test_set.labels[i].item() == label


def test_unit_range_round_trip(test_set):
    unit = data.to_unit_range(test_set.images[:10])
    assert unit.min() >= 0 and unit.max() <= 1
    torch.testing.assert_close(unit * 2 - 1, test_set.images[:10])


def test_subset_is_seeded_and_sized(folder, tmp_path):
    a = data.load_mnist("test", subset=100, local_dir=folder, root=tmp_path)
    b = data.load_mnist("test", subset=100, local_dir=folder, root=tmp_path)
    c = data.load_mnist("test", subset=100, local_dir=folder, root=tmp_path, seed=1)
    assert len(a) == 100
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    with pytest.raises(ValueError, match="subset must be an int between 1 and 10000"):
        data.load_mnist("test", subset=0, local_dir=folder, root=tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_mnist("valid", local_dir=folder, root=tmp_path)


def test_argument_wins_over_environment_variable(folder, tmp_path, monkeypatch):
    monkeypatch.setenv(data.MNIST_DIR_ENV, str(tmp_path / "nowhere"))
    ds = data.load_mnist("test", subset=5, local_dir=folder, root=tmp_path / "root")
    assert len(ds) == 5
    with pytest.raises(data.MNISTUnavailable, match="nowhere.*does not exist"):
        data.load_mnist("test", subset=5, root=tmp_path / "root2")


def test_torchvision_root_layout_is_accepted(folder, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_FILES:
        shutil.copy(folder / name, raw / name)
    assert data.check_mnist_folder(tmp_path) == raw


def test_corrupted_and_missing_files_are_refused(folder, tmp_path):
    for name in data.MNIST_FILES:
        shutil.copy(folder / name, tmp_path / name)
    victim = tmp_path / "t10k-labels-idx1-ubyte.gz"
    victim.write_bytes(victim.read_bytes()[:1000])                      # a truncated download
    with pytest.raises(data.MNISTUnavailable, match="t10k-labels-idx1-ubyte.gz.*MD5"):
        data.load_mnist("test", local_dir=tmp_path, root=tmp_path / "root")
    victim.unlink()
    with pytest.raises(data.MNISTUnavailable, match="lacks t10k-labels-idx1-ubyte.gz"):
        data.check_mnist_folder(tmp_path)


def test_damaged_extracted_files_are_extracted_again_never_read(folder, tmp_path, monkeypatch):
    root = tmp_path / "root"
    good = data.load_mnist("test", local_dir=folder, root=root)
    raw = root / "MNIST" / "raw"
    labels, images = raw / "t10k-labels-idx1-ubyte", raw / "t10k-images-idx3-ubyte"
    damaged = bytearray(labels.read_bytes())
    damaged[8:] = bytes([200]) * (len(damaged) - 8)                     # right size and header, every label 200
    labels.write_bytes(bytes(damaged))
    with pytest.warns(UserWarning, match=r"t10k-labels-idx1-ubyte was damaged \(its SHA-256") as caught:
        again = data.load_mnist("test", local_dir=folder, root=root)
        assert torch.equal(again.labels, good.labels)                   # not 200 everywhere
    assert caught[0].category is data.MNISTRepairedWarning

    images.write_bytes(images.read_bytes()[:-784])                      # one image short
    with pytest.warns(data.MNISTRepairedWarning, match=r"t10k-images-idx3-ubyte was damaged \(7,839,232 bytes instead "
                                                       r"of 7,840,016\); replaced it with a fresh extraction"):
        again = data.load_mnist("test", local_dir=folder, root=root)
    assert torch.equal(again.images, good.images)

    # Without a .gz to extract from and without permission to download, the damaged file is refused.
    monkeypatch.delenv(data.MNIST_DIR_ENV, raising=False)
    labels.write_bytes(bytes(damaged))
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.MNISTUnavailable, match="t10k-labels-idx1-ubyte is damaged .*t10k-labels-idx1-ubyte.gz "
                                                    "beside it is missing"):
        data.load_mnist("test", root=root, download=False)
    assert not labels.exists()


def test_no_folder_and_no_internet_names_both_ways_out(tmp_path, monkeypatch):
    monkeypatch.delenv(data.MNIST_DIR_ENV, raising=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(data.MNISTUnavailable) as info:
        data.load_mnist("test", root=tmp_path)
    message = str(info.value)
    assert data.MNIST_DIR_ENV in message and "local_dir" in message and "internet" in message


def test_loader_is_seeded_and_batched(test_set):
    small = torch.utils.data.TensorDataset(test_set.images[:100], test_set.labels[:100])
    first = [y.tolist() for _, y in data.make_loader(small, 32, seed=3)]
    again = [y.tolist() for _, y in data.make_loader(small, 32, seed=3)]
    other = [y.tolist() for _, y in data.make_loader(small, 32, seed=4)]
    assert first == again and first != other
    assert len(first) == 3 and all(len(b) == 32 for b in first)             # drop_last
    images, labels = next(iter(data.make_loader(small, 10, shuffle=False)))
    assert images.shape == (10, 1, 28, 28) and labels.tolist() == test_set.labels[:10].tolist()
