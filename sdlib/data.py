"""MNIST, online or offline, as tensors in [-1, 1], and a seeded batch loader.

Where the files come from, first match wins:
  1. the `local_dir=` argument of `load_mnist`,
  2. the environment variable SDLIB_MNIST_DIR,
  3. torchvision's download into `data/MNIST/raw/` of the checkout (needs internet once).
A local folder must hold the four official `.gz` files (directly, or in `MNIST/raw/` below it);
each is MD5-checked and copied into the data folder, where torchvision extracts it. The extracted
files, which torchvision reads from then on without checking them, are checked too before every load:
a damaged one is extracted again from its .gz, with a warning that names it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import warnings
from pathlib import Path

import torch
import torchvision
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from sdlib import runtime

MNIST_DIR_ENV = "SDLIB_MNIST_DIR"
# The MD5 sums torchvision checks (torchvision.datasets.MNIST.resources).
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Size and SHA-256 of the files extracted from them. Both files of a split are hashed on each load of it: SHA-256
# is fast enough to be a small part of the load (docs/measured.md).
EXTRACTED_FILES = {
    "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}


class MNISTUnavailable(RuntimeError):
    """MNIST could neither be read from a local folder nor downloaded."""


class MNISTRepairedWarning(UserWarning):
    """A damaged extracted MNIST file was replaced by a fresh extraction of its .gz."""


def to_model_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] -> float images in [-1, 1] (what every model in the course eats).

    The same as torchvision's ToTensor() followed by Normalize(mean=0.5, std=0.5).
    """
    return pixels.float().div(127.5).sub(1.0)


def from_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (what the pipeline and the plots take) -> [-1, 1] (what the models take)."""
    return images * 2.0 - 1.0


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> [0, 1] for display (values outside are clipped)."""
    return images.add(1.0).div(2.0).clamp(0.0, 1.0)


def _md5(path: Path) -> str:
    return _digest(path, "md5")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_mnist_folder(folder: str | os.PathLike) -> Path:
    """Return the folder that holds the four MNIST .gz files, after checking each one's MD5.

    Accepts a folder with the files in it or a torchvision root with them in MNIST/raw/.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise MNISTUnavailable(f"MNIST folder {str(folder)!r} is a file, not a folder: give the folder that holds "
                               f"the four .gz files")
    if not folder.is_dir():
        raise MNISTUnavailable(f"MNIST folder {str(folder)!r} does not exist")
    candidates = [folder, folder / "MNIST" / "raw", folder / "raw"]
    where = next((c for c in candidates if all((c / n).exists() for n in MNIST_FILES)), None)
    if where is None:
        missing = [n for n in MNIST_FILES if not (folder / n).exists()]
        raise MNISTUnavailable(f"MNIST folder {str(folder)!r} lacks {', '.join(missing)}; it must hold the four "
                               f"official files: {', '.join(MNIST_FILES)}")
    bad = [n for n, md5 in MNIST_FILES.items() if _md5(where / n) != md5]
    if bad:
        raise MNISTUnavailable(f"MNIST file(s) {', '.join(bad)} in {str(where)!r} fail their MD5 check "
                               f"(truncated or corrupted download?); replace them with the official files")
    return where


def _damage(path: Path) -> str | None:
    """What is wrong with an extracted MNIST file, or None when it is the official one."""
    size, sha256 = EXTRACTED_FILES[path.name]
    actual = path.stat().st_size
    if actual != size:
        return f"{actual:,} bytes instead of {size:,}"
    if _digest(path, "sha256") != sha256:
        return "its SHA-256 differs from the official file's"
    return None


def _extract(archive: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    with gzip.open(archive, "rb") as source, open(partial, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    os.replace(partial, target)          # an interrupted extraction never leaves a file under the real name


def check_extracted(raw: str | os.PathLike, names, *, download: bool = True) -> None:
    """Make sure the extracted MNIST files `names` in torchvision's `raw` folder are the official ones.

    A damaged file is replaced by a fresh extraction of its .gz (MD5-checked first), with a warning that
    names it. Without a good .gz beside it, it is removed, for torchvision to download again where
    `download` allows, and refused otherwise. A missing file is left for torchvision to extract.
    """
    raw = Path(raw)
    for name in names:
        path = raw / name
        if not path.exists():
            continue
        problem = _damage(path)
        if problem is None:
            continue
        path.unlink()
        archive = raw / f"{name}.gz"
        if archive.exists() and _md5(archive) == MNIST_FILES[archive.name]:
            _extract(archive, path)
            still = _damage(path)
            if still is not None:
                raise MNISTUnavailable(f"MNIST file {path} was damaged ({problem}) and extracting it again from "
                                       f"{archive.name} did not help ({still}); is the disk full or failing?")
            warnings.warn(f"MNIST file {path} was damaged ({problem}); replaced it with a fresh extraction of "
                          f"{archive.name}", MNISTRepairedWarning, stacklevel=3)
        elif download:
            warnings.warn(f"MNIST file {path} was damaged ({problem}) and {archive.name} is missing or damaged too; "
                          f"removed it, to be downloaded again", MNISTRepairedWarning, stacklevel=3)
        else:
            raise MNISTUnavailable(f"MNIST file {path} is damaged ({problem}) and {archive.name} beside it is missing "
                                   f"or fails its MD5 check, so it cannot be extracted again; removed it. Load with "
                                   f"download=True (needs internet once), or pass local_dir= (or set {MNIST_DIR_ENV}) "
                                   f"to a folder with the four official .gz files")


def _unavailable_message(root: Path, error: Exception) -> str:
    return (f"Could not get MNIST: the download into {root} failed ({type(error).__name__}: {error}).\n"
            f"Two ways out:\n"
            f"  1. connect to the internet once and run again (torchvision downloads 11 MB into {root}), or\n"
            f"  2. put the four official files ({', '.join(MNIST_FILES)}) in a folder and either set the "
            f"environment variable {MNIST_DIR_ENV}=/path/to/folder or pass load_mnist(local_dir='/path/to/folder').")


def mnist_torchvision(train: bool = True, local_dir: str | os.PathLike | None = None,
                      root: str | os.PathLike | None = None, download: bool = True) -> torchvision.datasets.MNIST:
    """torchvision's MNIST dataset, filled from `local_dir`, $SDLIB_MNIST_DIR or a download (in that order)."""
    root = Path(root) if root is not None else runtime.data_dir()
    local = local_dir if local_dir is not None else os.environ.get(MNIST_DIR_ENV) or None
    raw = root / "MNIST" / "raw"
    if local is not None:
        source = check_mnist_folder(local)
        raw.mkdir(parents=True, exist_ok=True)
        for name, md5 in MNIST_FILES.items():
            target = raw / name
            if source.resolve() != raw.resolve() and not (target.exists() and _md5(target) == md5):
                shutil.copyfile(source / name, target)
    split = "train" if train else "t10k"
    check_extracted(raw, [f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte"],
                    download=download or local is not None)
    try:
        # With the .gz files in place and MD5-correct, torchvision only extracts them (no network).
        return torchvision.datasets.MNIST(str(root), train=train, download=download or local is not None)
    except Exception as error:  # URLError, RuntimeError('Dataset not found'), HTTP errors...
        raise MNISTUnavailable(_unavailable_message(root, error)) from error


class MNIST(TensorDataset):
    """MNIST as two tensors: `images` (N, 1, 28, 28) float32 in [-1, 1] and `labels` (N,) int64."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        super().__init__(images, labels)

    @property
    def images(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def labels(self) -> torch.Tensor:
        return self.tensors[1]

    def __repr__(self) -> str:
        return f"MNIST({len(self)} images of shape {tuple(self.images.shape[1:])}, values in [-1, 1])"


def load_mnist(split: str = "train", subset: int | None = None, *, local_dir: str | os.PathLike | None = None,
               root: str | os.PathLike | None = None, seed: int = 0, download: bool = True) -> MNIST:
    """The MNIST `split` ('train': 60,000 images, 'test': 10,000) as tensors in [-1, 1].

    subset: keep only this many images, drawn at random with `seed` (the same ones every time);
        the quick mode uses it to keep tests fast.
    local_dir: a folder with the four official .gz files; wins over $SDLIB_MNIST_DIR.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    ds = mnist_torchvision(train=split == "train", local_dir=local_dir, root=root, download=download)
    images, labels = to_model_range(ds.data).unsqueeze(1), ds.targets.long()
    if subset is not None:
        if not isinstance(subset, int) or not 0 < subset <= len(labels):
            raise ValueError(f"subset must be an int between 1 and {len(labels)}, got {subset!r}")
        g = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(labels), generator=g)[:subset].sort().values
        images, labels = images[keep], labels[keep]
    return MNIST(images.contiguous(), labels.contiguous())


def make_loader(dataset: TensorDataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                drop_last: bool = True) -> DataLoader:
    """A DataLoader over a TensorDataset that hands out whole batches at once, in a seeded order.

    Indexing the tensors with a batch of indices is much faster than collating single items;
    the same seed gives the same order of batches on every machine.
    """
    g = torch.Generator().manual_seed(seed)
    order = RandomSampler(dataset, generator=g) if shuffle else SequentialSampler(dataset)
    batches = BatchSampler(order, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(dataset, sampler=batches, batch_size=None)
