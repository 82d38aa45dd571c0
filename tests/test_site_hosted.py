"""Hosted notebooks and slides (site/hosted.py, site/slides.py): the repository address is one setting in
pyproject.toml and the README's Colab badges and every lesson's install cell agree with it; the install cell
installs the course only where `import sdlib` fails, from the local copy $SDLIB_INSTALL_FROM names when it is
set (checked offline: the pip command it runs, and one real install of this checkout into a throwaway
folder); every lesson exports to reveal.js slides with a slide at each "## " section."""
from __future__ import annotations

import builtins
import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser

import nbformat
import pytest
from helpers import NOTEBOOKS, ROOT


def load(name):
    spec = importlib.util.spec_from_file_location(f"site_{name}", ROOT / "site" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hosted = load("hosted")
slides = load("slides")


def first_code_cell(path) -> str:
    return next(c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code")


def test_the_repository_address_is_one_setting():
    repo = hosted.repository_url()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", repo), repo
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\(https://colab\.research\.google\.com/github/[^)]*\)", readme)
    for path in NOTEBOOKS:
        assert first_code_cell(path).startswith(hosted.install_guard(repo)), (
            f"{path.name}: the first code cell does not begin with the install guard for {repo}: "
            f"run `python site/hosted.py`")
        row = next((line for line in readme.splitlines() if line.startswith("| ") and f"`{path.stem}`" in line), None)
        assert row is not None, f"the README's lesson map has no row for {path.stem}"
        assert f"({hosted.colab_url(path.stem, repo)})" in row, (
            f"the README's row for {path.stem} lacks its Colab link for {repo}: run `python site/hosted.py`")
    assert len(links) == len(NOTEBOOKS), f"Colab links in the README: {len(links)}, lessons: {len(NOTEBOOKS)}"


def test_colab_url_refuses_an_address_that_is_not_github():
    with pytest.raises(ValueError, match="OWNER/NAME"):
        hosted.colab_url("02_forward_noising", "https://example.org/course")


class FakeIPython:
    def __init__(self):
        self.magics = []

    def run_line_magic(self, name, line):
        self.magics.append((name, line))


def run_guard(monkeypatch, sdlib_installed: bool, install_from: str | None):
    """Run the install guard of the first lesson's first code cell as a kernel would, with `import sdlib` failing or
    not, and return the magics it ran."""
    guard, rest = hosted.split_guard(first_code_cell(NOTEBOOKS[0]))
    assert guard and "setup(" in rest, "the first code cell must be the guard, then the setup"
    if install_from is None:
        monkeypatch.delenv(hosted.INSTALL_ENV, raising=False)
    else:
        monkeypatch.setenv(hosted.INSTALL_ENV, install_from)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "sdlib" and not sdlib_installed:
            raise ModuleNotFoundError("No module named 'sdlib'", name="sdlib")
        return real_import(name, *args, **kwargs)

    shell = FakeIPython()
    monkeypatch.setattr(builtins, "__import__", fake_import)
    exec(compile(guard, "first cell", "exec"), {"get_ipython": lambda: shell})
    monkeypatch.setattr(builtins, "__import__", real_import)
    return shell.magics


def test_install_cell_does_nothing_where_the_course_is_installed(monkeypatch):
    assert run_guard(monkeypatch, sdlib_installed=True, install_from=None) == []


def test_install_cell_installs_from_the_repository_or_a_local_copy(monkeypatch):
    repo = hosted.repository_url()
    assert run_guard(monkeypatch, False, None) == [("pip", f'install -q "git+{repo}"')]
    assert run_guard(monkeypatch, False, str(ROOT)) == [("pip", f'install -q "{ROOT}"')]


@pytest.mark.slow                # a pip install
def test_install_cell_command_installs_this_checkout(monkeypatch, tmp_path):
    """The pip command the guard runs for a local copy, run for real into a throwaway folder (no dependencies,
    no network): sdlib and its shipped weights land there."""
    (name, line), = run_guard(monkeypatch, False, str(ROOT))
    assert name == "pip"
    args = [a.strip('"') for a in line.split()]
    target = tmp_path / "target"
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--no-deps", "--no-build-isolation",
                             "--no-index", "--target", str(target)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "sdlib" / "runtime" / "__init__.py").is_file()
    assert list((target / "sdlib" / "weights").glob("*.pt")), "the pretrained weights were not installed"


# --------------------------------------------------------------------------------------------------- slides


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_section_starts_a_slide(path):
    nb = nbformat.read(str(path), as_version=4)
    for i, cell in enumerate(nb.cells):
        wanted = slides.slide_type(cell, i == 0)
        got = cell.metadata.get("slideshow", {}).get("slide_type")
        assert got == wanted, (f"{path.name} cell {i} ({cell.source[:40]!r}): slide_type {got!r}, wanted {wanted!r}; "
                               "run `python site/slides.py --mark`")


class Sections(HTMLParser):
    """The text of each <h2> in a reveal.js export, with the (outer, inner) slide index it sits in."""

    def __init__(self):
        super().__init__()
        self.depth, self.outer, self.inner, self.in_h2, self.h2 = 0, -1, -1, False, []

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.depth += 1
            if self.depth == 1:
                self.outer, self.inner = self.outer + 1, -1
            elif self.depth == 2:
                self.inner += 1
        elif tag == "h2":
            self.in_h2 = True
            self.h2.append([(self.outer, self.inner), ""])

    def handle_endtag(self, tag):
        if tag == "section":
            self.depth -= 1
        elif tag == "h2":
            self.in_h2 = False

    def handle_data(self, data):
        if self.in_h2:
            self.h2[-1][1] += data


@pytest.mark.slow                # nbconvert's slides export
def test_slides_export_puts_each_section_on_its_own_slide(tmp_path):
    path = ROOT / "notebooks" / "02_forward_noising.ipynb"
    out = slides.export(path, tmp_path)
    html = out.read_text()
    assert 'class="reveal"' in html
    nb = nbformat.read(str(path), as_version=4)
    headings = [line[3:].strip() for c in nb.cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("## ")]
    parser = Sections()
    parser.feed(html)
    found = [(where, text.replace("¶", "").strip()) for where, text in parser.h2]
    assert len(found) == len(headings) >= 5, (len(found), len(headings))
    places = [where for where, _ in found]
    assert len(set(places)) == len(places), "two sections share a slide"
    assert all(inner == 0 for _, inner in places), "a section does not start its slide"
