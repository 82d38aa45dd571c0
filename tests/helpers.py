"""Helpers shared by the tests (imported as `from helpers import ...`; tests/ is on sys.path)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdlib import data, runtime

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))      # lessons and appendices (03b_...)


def mnist_folder() -> Path:
    """A folder with the four official MNIST .gz files: $SDLIB_MNIST_DIR, else the downloaded copy."""
    if os.environ.get(data.MNIST_DIR_ENV):
        return data.check_mnist_folder(os.environ[data.MNIST_DIR_ENV])
    try:
        data.load_mnist("test", subset=10)
    except data.MNISTUnavailable as error:
        pytest.skip(f"MNIST is not available here: {error}")
    return data.check_mnist_folder(runtime.data_dir())
