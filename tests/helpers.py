"""Helpers shared by the tests (imported as `from helpers import ...`; tests/ is on sys.path)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sdlib import data, runtime

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))      # lessons and appendices (03b_...)
ARTEFACTS = ROOT / "_build" / "test-artefacts"                             # the browser tests' screenshots and logs
INSTALL_BROWSER = ("no headless Chromium here: install one with `apt-get update && apt-get install -y chromium` "
                   "(Debian/Ubuntu; .ci/run does it) or point SDLIB_CHROMIUM at a Chrome/Chromium binary, and "
                   "`pip install -e \".[test]\"` for Playwright")


def chromium_path() -> str | None:
    """The Chromium to drive: $SDLIB_CHROMIUM, else the system's chromium (Debian's package), else None."""
    if os.environ.get("SDLIB_CHROMIUM"):
        return os.environ["SDLIB_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def no_browser(reason: str):
    """Skip (a learner's machine) or fail (CI, SDLIB_REQUIRE_BROWSER=1): the browser tests must run in CI."""
    if os.environ.get("SDLIB_REQUIRE_BROWSER", "").strip() in ("1", "true", "yes"):
        pytest.fail(f"SDLIB_REQUIRE_BROWSER is set but {reason}")
    pytest.skip(reason)


def mnist_folder() -> Path:
    """A folder with the four official MNIST .gz files: $SDLIB_MNIST_DIR, else the downloaded copy."""
    if os.environ.get(data.MNIST_DIR_ENV):
        return data.check_mnist_folder(os.environ[data.MNIST_DIR_ENV])
    try:
        data.load_mnist("test", subset=10)
    except data.MNISTUnavailable as error:
        pytest.skip(f"MNIST is not available here: {error}")
    return data.check_mnist_folder(runtime.data_dir())
