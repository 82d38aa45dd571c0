"""Sphinx settings of the course website. Build it with `python site/build.py` (see README, "The course as a
website"); that script lays out the pages in a staging folder and runs Sphinx on it with this file."""
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(os.environ["SDLIB_SITE_ROOT"]).resolve()         # the checkout, set by site/build.py
sys.path.insert(0, str(ROOT))

from sdlib.runtime import is_quick

project = "Stable Diffusion from scratch"
author = "the course's authors"
copyright = "the course's authors, MIT licence"

extensions = [
    "myst_nb",                     # notebooks and markdown (MyST); executes the lessons through jupyter-cache
    "sphinx.ext.autodoc",          # the API reference, from sdlib's docstrings
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",      # MathJax 3 copied into _static/mathjax (no CDN)
]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
html_theme = "furo"                # no web fonts, no CDN; search built in
html_title = project
html_static_path = []
html_last_updated_fmt = None
html_copy_source = False
html_show_sourcelink = False

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# Executing the lessons. "cache": a lesson runs again only when one of its code cells changed, so a change to
# the prose re-renders from the cache; the quick and the full mode have separate caches (site/build.py).
# With SDLIB_SITE_EXECUTED (build.py --executed) the lessons arrive executed and nothing runs.
EXECUTED = os.environ.get("SDLIB_SITE_EXECUTED", "")
nb_execution_mode = "off" if EXECUTED else "cache"
nb_execution_cache_path = os.environ["SDLIB_SITE_CACHE"]
nb_execution_timeout = -1
nb_execution_allow_errors = os.environ.get("SDLIB_SITE_ALLOW_ERRORS") == "1"    # build.py --allow-errors
nb_execution_raise_on_error = not nb_execution_allow_errors
nb_execution_show_tb = True
nb_merge_streams = True
nb_ipywidgets_js = {}              # no require.js / widget manager from a CDN: widgets are rendered statically
nb_render_image_options = {}
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type", "misc.highlighting_failure", "myst.xref_missing"]


def _record_execution_times(app, exception):
    """Write each lesson's execution time (the time of the run whose outputs the page shows) to
    _site/execution_times.json and print them."""
    if exception is not None:
        return
    from myst_nb.sphinx_ import NbMetadataCollector

    rows = {}
    if EXECUTED:                   # lessons run before the build: their records (seconds, who ran them)
        for name, record in json.loads(Path(EXECUTED).read_text()).items():
            rows[name] = {"seconds": record["seconds"], "executed_at": None, "method": record.get("by"),
                          "succeeded": True}
    for docname in sorted(app.env.found_docs) if not EXECUTED else ():
        data = NbMetadataCollector.get_exec_data(app.env, docname)
        if data:
            rows[docname.split("/")[-1]] = {
                "seconds": None if data.get("runtime") is None else round(float(data["runtime"]), 1),
                "executed_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(data["mtime"])),
                "method": data.get("method"), "succeeded": data.get("succeeded")}
    mode = "quick" if is_quick() else "full"
    out = Path(app.outdir) / "execution_times.json"
    out.write_text(json.dumps({"mode": mode, "lessons": rows}, indent=1) + "\n")
    print(f"\nExecution time of each lesson ({mode} mode; written to {out}):")
    for name, row in rows.items():
        when = f"run {row['executed_at']}" if row["executed_at"] else f"run by {row['method']}"
        print(f"  {name:36s} {row['seconds'] if row['seconds'] is not None else '?':>8} s   ({when})")


def setup(app):
    app.config.mathjax_path = "mathjax/tex-svg.js"     # SVG output: MathJax needs no font files at all
    app.connect("build-finished", _record_execution_times)
