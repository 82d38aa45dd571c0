"""Shared test settings. Notebooks run in the quick mode unless SDLIB_QUICK says otherwise, with
MNIST from $SDLIB_MNIST_DIR when it is set (the CI points it at the shared copy).

One run of each lesson, two uses. nbval runs every lesson top to bottom (a notebook passes when no cell
raises). Its kernels start the way the website's build starts them (site/kernel_startup.py: an explorer shows
as a strip of frames, a progress bar as its last line, a quiz as text) and draw figures inline. The outputs of
every cell are kept, and when a lesson has run without an error it is written, executed, to
_build/executed/MODE/. tests/test_site.py then builds the website from those notebooks instead of running
every lesson a second time, so those tests run after the notebooks.
"""
import hashlib
import json
import os
import shutil
from pathlib import Path

import matplotlib
import nbformat
import pytest

matplotlib.use("Agg")
os.environ.setdefault("SDLIB_QUICK", "1")     # inherited by the notebook kernels that nbval starts
os.environ.setdefault("MPLBACKEND", "Agg")    # for subprocesses; not the notebook kernels (see below)

ROOT = Path(__file__).resolve().parent
# test files that read the website: they run after the notebooks, whose executed copies the site is built from
AFTER_NOTEBOOKS = ("test_site.py", "test_browser_jupyterlab.py")
# test files that run lessons, build the site or start a browser: left out of the fast path, pytest -m "not slow"
SLOW_FILES = AFTER_NOTEBOOKS


def executed_dir(mode: str) -> Path:
    """Where the lessons that nbval ran are written, executed (git-ignored)."""
    return ROOT / "_build" / "executed" / mode


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell"


def pytest_configure(config):
    config._sdlib_executed = {}                # lesson name -> executed notebook written in this session
    config._sdlib_cells = {}                   # lesson name -> {cell number: (outputs, passed, seconds)}


def pytest_collection_modifyitems(session, config, items):
    """The site's tests after everything else (they read the notebooks that nbval has just run); the lessons,
    the site and the browser marked slow (and, in their files, tests that start processes), so that
    `pytest -m "not slow"` runs the unit tests alone."""
    late = [item for item in items if item.path.name in AFTER_NOTEBOOKS]
    items[:] = [item for item in items if item.path.name not in AFTER_NOTEBOOKS] + late
    for item in items:
        if _is_cell(item) or item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """nbval starts a lesson's kernel in its first cell's setup: give that kernel the website's startup."""
    if not _is_cell(item) or item.parent.kernel is not None:
        yield
        return
    ipython = ROOT / "_build" / "ipython"
    startup = ipython / "profile_default" / "startup" / "00-sdlib-site.py"
    startup.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "site" / "kernel_startup.py", startup)
    # the lesson's checkpoints go to a folder of this run, emptied first: a test run never resumes a learner's
    # training from runs/, nor one of an earlier test run
    runs = ROOT / "_build" / "test-runs" / Path(str(item.parent.fspath)).stem
    shutil.rmtree(runs, ignore_errors=True)
    saved = {key: os.environ.get(key) for key in ("IPYTHONDIR", "SDLIB_NO_WIDGETS", "MPLBACKEND", "SDLIB_RUNS_DIR")}
    os.environ.update(IPYTHONDIR=str(ipython), SDLIB_NO_WIDGETS="1", SDLIB_RUNS_DIR=str(runs))
    os.environ.pop("MPLBACKEND", None)         # the kernel's own inline backend, so its figures are outputs
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not _is_cell(item) or call.when != "call":
        return
    report = outcome.get_result()
    name = Path(str(item.parent.fspath)).stem
    cells = item.config._sdlib_cells.setdefault(name, {})
    cells[item.cell_num] = (item.test_outputs or [], report.passed, call.duration)
    code = [cell for cell in item.parent.nb.cells if cell.cell_type == "code"]
    if len(cells) == len(code):
        _write_executed(item.config, name, Path(str(item.parent.fspath)), item.parent.nb, cells)


def _write_executed(config, name, source: Path, nb, cells) -> None:
    """The lesson with every cell's outputs, and a record of its run, if every cell passed."""
    from sdlib.runtime import is_quick

    if not all(passed for _, passed, _ in cells.values()):
        return
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code):
        outputs, _, _ = cells[number]
        cell.outputs = [nbformat.from_dict(dict(out)) for out in outputs]
        cell.execution_count = number + 1
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = number + 1
    folder = executed_dir("quick" if is_quick() else "full")
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    record = {"seconds": round(sum(seconds for _, _, seconds in cells.values()), 1),
              "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(), "by": "nbval (pytest)"}
    (folder / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    config._sdlib_executed[name] = folder / f"{name}.ipynb"
