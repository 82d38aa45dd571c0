"""The notebook policy: notebooks are committed clean (no outputs, no execution counts, no widget
state), read the quick mode in their first code cell and nowhere else, and never hard-code a device.
(The notebooks themselves run top to bottom through nbval: `pytest` collects notebooks/ too.)"""
import json
import re

import nbformat
import pytest
from helpers import NOTEBOOKS, ROOT

LESSONS = ["01_probability_and_elbo", "02_forward_noising", "03_ddpm_mnist", "03b_fast_training_on_a_cpu", "04_vae", "05_clip", "06_unet_attention",
           "07_classifier_free_guidance", "08_latent_diffusion", "08b_from_mnist_to_stable_diffusion", "09_flow_matching"]


def test_the_lessons_are_there():
    assert [p.stem for p in NOTEBOOKS][:len(LESSONS)] == LESSONS
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert path.stem in readme, f"README's lesson map does not mention {path.stem}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(path):
    raw = json.loads(path.read_text())
    ids = [cell.get("id") for cell in raw["cells"]]
    missing = [i for i, cell_id in enumerate(ids) if not cell_id]
    assert not missing, f"cells {missing} have no id (nbformat 4.5 requires one; nbformat.read would invent them)"
    assert len(set(ids)) == len(ids), "two cells share an id"
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert "widgets" not in nb.metadata, "saved widget state: clear it before committing"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: clear all outputs before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count: clear outputs"
        assert not cell.get("attachments"), f"cell {i} has attachments"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_mode_is_read_in_the_first_code_cell_only(path):
    code = [c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]
    # It begins with the guarded install of a hosted notebook (site/hosted.py; tests/test_site_hosted.py checks
    # its address and what it runs), then calls setup() and reads the mode.
    guard = re.match(r"try:[^\n]*\n    import sdlib\nexcept ImportError:[^\n]*\n(    [^\n]*\n)+", code[0])
    assert guard and "run_line_magic(\"pip\"" in guard[0], "the first code cell must begin with the guarded install"
    rest = code[0][guard.end():]
    assert re.search(r"\bsetup\(", rest) and "QUICK" in rest, "the first code cell must call setup()"
    for i, source in enumerate(code[1:], start=1):
        for pattern in (r"\bQUICK\b", r"rt\.pick\(", r"rt\.quick", "SDLIB_QUICK", r"is_quick\("):
            assert not re.search(pattern, source), f"code cell {i} reads the mode ({pattern}); move it to the first cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_hard_coded_device(path):
    text = path.read_text()
    assert ".cuda()" not in text and "device='cuda'" not in text and 'device="cuda"' not in text


def test_library_never_hard_codes_a_device():
    for path in (ROOT / "sdlib").rglob("*.py"):
        assert ".cuda()" not in path.read_text(), path
