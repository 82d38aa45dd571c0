"""Every lesson as reveal.js slides for a teacher (nbconvert's slides exporter): a new slide at each "## "
section, a sub-slide (below it) at each "### " heading. A markdown cell that holds a section heading after its
first line is cut there in the export, so every section begins its own slide.

    python site/slides.py                    # writes _site/slides/NN_name.slides.html for every lesson
    python site/slides.py 02_forward_noising --out slides/
    python site/slides.py --executed         # with the outputs of the last site build (python site/build.py)
    python site/slides.py --mark             # maintainers: set the slide metadata in notebooks/ (see below)

The slide breaks live in the notebooks as cell metadata (`"slideshow": {"slide_type": "slide"}`), which
JupyterLab's property inspector shows and RISE reads too. `--mark` sets it from the headings: run it after
adding a section (tests/test_site_hosted.py checks that every section starts a slide).

The slides load reveal.js (and require.js, Font Awesome) from the web when opened, as nbconvert does by default;
give `--reveal-prefix` a local copy of reveal.js 4 to show them offline. MathJax comes from the site's own
copy when the slides sit in _site/slides (after a site build), else from the web. Nothing is fetched while
exporting.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sdlib.runtime import is_quick

LESSON_GLOB = "[0-9][0-9]*_*.ipynb"


def slide_type(cell: dict, first: bool) -> str | None:
    """"slide" for the title cell and a markdown cell holding a "## " section heading, "subslide" for one
    holding a "### " heading, None (continue the slide) for any other cell."""
    if first:
        return "slide"
    if cell["cell_type"] != "markdown":
        return None
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    lines = [line for line in text.splitlines()]
    if any(line.startswith("## ") for line in lines):
        return "slide"
    if any(line.startswith("### ") for line in lines):
        return "subslide"
    return None


def mark(path: Path) -> bool:
    """Set the slideshow metadata of one notebook from its headings (load, change, write in one go).
    Returns True when the file changed."""
    text = path.read_text()
    nb = json.loads(text)
    for i, cell in enumerate(nb["cells"]):
        kind = slide_type(cell, i == 0)
        if kind is None:
            cell["metadata"].pop("slideshow", None)
        else:
            cell["metadata"]["slideshow"] = {"slide_type": kind}
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def split_sections(nb) -> None:
    """Split every markdown cell that holds a "## " heading after its first line (e.g. "## Summary" followed by
    "## What comes next") before each such heading, in memory, so that each section begins its own slide.
    The notebooks themselves are not changed."""
    import copy

    cells = []
    for i, cell in enumerate(nb.cells):
        lines = cell.source.splitlines(keepends=True) if cell.cell_type == "markdown" else []
        fence, cuts = False, []
        for k, line in enumerate(lines):
            if line.lstrip().startswith(("```", "~~~")):
                fence = not fence
            elif not fence and k > 0 and line.startswith("## "):
                cuts.append(k)
        if not cuts:
            cells.append(cell)
            continue
        bounds = [0, *cuts, len(lines)]
        for n, (a, b) in enumerate(zip(bounds, bounds[1:])):
            part = copy.deepcopy(cell)
            part.source = "".join(lines[a:b]).rstrip("\n")
            part.id = f"{cell.get('id', i)}-{n}"
            kind = slide_type(part, i == 0 and n == 0)
            if kind is None:
                part.metadata.pop("slideshow", None)
            else:
                part.metadata["slideshow"] = {"slide_type": kind}
            cells.append(part)
    nb.cells = cells


def export(notebook: Path, out_dir: Path, executed: bool = False, reveal_prefix: str | None = None,
           mathjax_url: str | None = None) -> Path:
    """Write NOTEBOOK as OUT_DIR/<name>.slides.html and return the path."""
    import nbformat
    from nbconvert import SlidesExporter

    nb = nbformat.read(str(notebook), as_version=4)
    if executed:
        from jupyter_cache import get_cache
        mode = "quick" if is_quick() else "full"
        cache = get_cache(str(ROOT / "_build" / "site" / mode / "jupyter_cache"))
        try:
            _, nb = cache.merge_match_into_notebook(nb)
        except KeyError:
            raise SystemExit(f"{notebook.name} has no executed copy in the {mode}-mode site cache: "
                             f"run `python site/build.py` first (SDLIB_QUICK={int(mode == 'quick')})") from None
    split_sections(nb)
    exporter = SlidesExporter()
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    if mathjax_url:
        exporter.mathjax_url = mathjax_url
    body, _ = exporter.from_notebook_node(nb)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{notebook.stem}.slides.html"
    target.write_text(body)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python site/slides.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lessons to export (default: all), e.g. 02_forward_noising")
    parser.add_argument("--out", type=Path, default=ROOT / "_site" / "slides", help="default: _site/slides/")
    parser.add_argument("--executed", action="store_true", help="with the outputs cached by the last site build")
    parser.add_argument("--reveal-prefix", help="where reveal.js 4 is (a URL or a relative path); default: the web")
    parser.add_argument("--mark", action="store_true", help="set the slide metadata in notebooks/ and stop")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob(LESSON_GLOB))
    if args.lessons:
        known = {p.stem: p for p in notebooks}
        unknown = [name for name in args.lessons if name not in known]
        if unknown:
            parser.error(f"unknown lessons {unknown}; the lessons are {sorted(known)}")
        notebooks = [known[name] for name in args.lessons]
    if args.mark:
        for path in notebooks:
            print(f"{path.name}: {'updated' if mark(path) else 'already marked'}")
        return 0
    out = args.out.resolve()
    vendored = out.parent / "_static" / "mathjax" / "tex-svg.js"
    mathjax = os.path.relpath(vendored, out) if vendored.exists() else None
    for path in notebooks:
        print(export(path, out, args.executed, args.reveal_prefix, mathjax))
    return 0


if __name__ == "__main__":
    sys.exit(main())
