"""Build the course website into _site/: every lesson executed, with its figures; the README's lesson map
as the home page; the API reference from sdlib's docstrings; the recipes and the measured numbers; search;
the student notebooks as a zip.

    pip install -e ".[site]"
    python site/build.py                 # the full mode: about 100 minutes on a 2-core CPU (docs/measured.md)
    SDLIB_QUICK=1 python site/build.py   # the quick mode: the same site with quick-mode outputs, in minutes

`--executed DIR` renders lessons that were already run instead (the test suite runs each lesson once, through
nbval, and builds the site from those copies). Otherwise executions are cached with jupyter-cache (one cache per mode, in _build/site/MODE/jupyter_cache): a lesson
runs again only when one of its code cells changed, so a change to the prose re-renders in about a minute.
The cache does not see changes to sdlib itself: after one, `--fresh` runs every lesson again. Each lesson's execution
time is printed and written to _site/execution_times.json. Sphinx + MyST-NB do the work (no Node.js);
site/conf.py holds their settings.

Widgets cannot run on a static page. Every kernel of the build loads site/kernel_startup.py, which shows an
explorer as a strip of frames (sdlib.classroom.widgets.render_strip) and progress bars as text; quizzes print as text
(SDLIB_NO_WIDGETS=1).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
LESSON_GLOB = "[0-9][0-9]*_*.ipynb"
COLAB_BADGE = re.compile(r"\[!\[[^\]]*\]\([^)]*\)\]\(([^)]*)\)")      # [![alt](image)](link)


def readme_section(title: str) -> str:
    """The body of the README section that starts with '## TITLE' (up to the next '## ' heading)."""
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if not match:
        raise SystemExit(f"README.md has no section '## {title}'")
    return match[1].strip() + "\n"


def lesson_names() -> list[str]:
    return [p.stem for p in sorted((ROOT / "notebooks").glob(LESSON_GLOB))]


def home_page() -> str:
    """index.md: the README's opening and its lesson map, each notebook name a link to its page."""
    readme = (ROOT / "README.md").read_text()
    opening = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()
    lessons = readme_section("The lessons")
    lessons = lessons.replace("(docs/measured.md)", "(measured.md)").replace("(docs/scaling.md)", "(scaling.md)")
    lessons = COLAB_BADGE.sub(r"[Colab](\1)", lessons)       # a text link: the badge image would come from the web
    for name in lesson_names():
        lessons = lessons.replace(f"`{name}`", f"[`{name}`](lessons/{name}.ipynb)")
    mode = "quick" if quick_mode() else "full"
    note = ("" if mode == "full" else
            "\n```{note}\nThis copy of the site was built in the **quick mode**: every lesson ran with tiny settings, so "
            "its numbers and pictures are poor. `python site/build.py` builds it with the full mode.\n```\n")
    return f"""# Stable Diffusion from scratch
{note}
{opening}

## The lessons

Every lesson below is shown executed ({mode} mode), with its outputs; the notebooks themselves are in
`notebooks/`. Run one in a hosted notebook with its "Colab" link: its first cell installs the course there.

{lessons}
## More

- [The library's API](api/index.md), generated from sdlib's docstrings.
- [Recipes and pretrained weights](recipes.md): the commands that trained every shipped model.
- [Measured](measured.md): every number the course quotes, with the command behind it; [Scaling up](scaling.md).
- {{download}}`The student notebooks <downloads/student-notebooks.zip>` (a zip): every solution replaced by a stub.
- <a href="execution_times.json">Execution times</a> of the lessons in this build (JSON).

```{{toctree}}
:hidden:
:caption: Lessons

{chr(10).join(f"lessons/{name}" for name in lesson_names())}
```

```{{toctree}}
:hidden:
:caption: Reference

api/index
recipes
measured
scaling
```
"""


def api_pages() -> dict[str, str]:
    """api/index.md and one page per sdlib module (recipes and configs included), each an automodule."""
    modules = []
    for path in sorted((ROOT / "sdlib").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__" or "checks" in parts:     # the checkers hold the exercises' answers
            continue
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    pages = {f"api/{m}.md": f"# `{m}`\n\n```{{automodule}} {m}\n:members:\n```\n" for m in modules}
    pages["api/index.md"] = ("# API reference\n\nGenerated from the docstrings of sdlib, the library the lessons "
                             "build (the exercise checkers are left out: they hold the answers).\n\n```{toctree}\n"
                             ":maxdepth: 1\n\n" + "\n".join(f"{m}" for m in modules) + "\n```\n")
    return pages


def recipes_page() -> str:
    """recipes.md: the README's pretrained-weights table and each recipe's docstring."""
    out = ["# Recipes and pretrained weights\n", readme_section("Pretrained weights"), "\n## The recipes\n"]
    for path in sorted((ROOT / "sdlib" / "recipes").glob("*.py")):
        if path.stem == "__init__":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out.append(f"### `sdlib.recipes.{path.stem}`\n\n```text\n{doc.strip()}\n```\n")
    return "\n".join(out)


def student_archive(target: Path, tmp: Path) -> None:
    """The student notebooks (sdlib.classroom.student, written to TMP first) in one zip."""
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "sdlib.classroom.student", "--out", str(tmp)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
        for nb in sorted(tmp.glob("*.ipynb")):
            z.write(nb, f"student-notebooks/{nb.name}")
    if target.exists() and target.read_bytes() == part.read_bytes():
        part.unlink()                            # unchanged: keep the old file, so Sphinx has nothing to redo
    else:
        part.replace(target)


def write_if_changed(path: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    if path.exists() and path.read_bytes() == data:
        return                                   # same content, same mtime: Sphinx does not re-read the page
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def quick_mode() -> bool:
    sys.path.insert(0, str(ROOT))
    from sdlib.runtime import is_quick
    return is_quick()


def executed_lessons(folder: Path, wanted: list[str]) -> dict[str, dict]:
    """The records of lessons already executed into FOLDER (NAME.ipynb and NAME.json, as the test suite's nbval
    run writes them, see conftest.py). Refuses a lesson that is missing or was run from another version."""
    import hashlib

    records = {}
    for name in wanted:
        nb, record = folder / f"{name}.ipynb", folder / f"{name}.json"
        if not nb.is_file() or not record.is_file():
            raise SystemExit(f"--executed {folder}: no executed copy of {name} ({nb.name} and {record.name})")
        records[name] = json.loads(record.read_text())
        now = hashlib.sha256((ROOT / "notebooks" / f"{name}.ipynb").read_bytes()).hexdigest()
        if records[name].get("source_sha256") != now:
            raise SystemExit(f"--executed {folder}: {name} was executed from another version of the notebook; "
                             "run it again (or build without --executed)")
    return records


def stage(src: Path, only: list[str] | None, work: Path, executed: Path | None = None) -> None:
    """Lay out the pages in the staging folder src/ (the lessons executed in EXECUTED, if given)."""
    pages = {"index.md": home_page(), "recipes.md": recipes_page(), **api_pages()}
    for name in ("measured", "scaling"):
        pages[f"{name}.md"] = (ROOT / "docs" / f"{name}.md").read_text()
    for rel, text in pages.items():
        write_if_changed(src / rel, text)
    wanted = set(lesson_names() if not only else only)
    for nb in sorted((ROOT / "notebooks").glob(LESSON_GLOB)):
        target = src / "lessons" / nb.name
        if nb.stem in wanted:
            write_if_changed(target, (executed / nb.name if executed else nb).read_bytes())
        elif target.exists():
            target.unlink()
    student_archive(src / "downloads" / "student-notebooks.zip", work / "student")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python site/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_site", help="where the site goes (default: _site/)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="jupyter-cache folder (default: _build/site/MODE/jupyter_cache)")
    parser.add_argument("--work", type=Path, default=None,
                        help="staging folder for the pages and Sphinx's state (default: _build/site/MODE)")
    parser.add_argument("--fresh", action="store_true", help="forget the cached executions and run every lesson again")
    parser.add_argument("--allow-errors", action="store_true",
                        help="go on when a lesson raises, and show the traceback on its page (default: stop)")
    parser.add_argument("--only", nargs="+", metavar="LESSON", help="build only these lessons (e.g. 02_forward_noising)")
    parser.add_argument("--executed", type=Path, metavar="DIR",
                        help="render the lessons already executed in DIR (NAME.ipynb and NAME.json; the test suite "
                             "writes them to _build/executed/MODE) instead of running them")
    args = parser.parse_args(argv)

    quick = quick_mode()
    mode = "quick" if quick else "full"
    work = (args.work or ROOT / "_build" / "site" / mode).resolve()
    cache = (args.cache or work / "jupyter_cache").resolve()
    out = args.out.resolve()
    if args.fresh:
        shutil.rmtree(cache, ignore_errors=True)
    known = set(lesson_names())
    if args.only and not set(args.only) <= known:
        parser.error(f"unknown lessons {sorted(set(args.only) - known)}; the lessons are {sorted(known)}")

    executed = args.executed.resolve() if args.executed else None
    records = executed_lessons(executed, args.only or sorted(known)) if executed else None

    if out.exists() and any(out.iterdir()) and not (out / ".sdlib-site").exists():
        raise SystemExit(f"{out} exists and is not a site this script built: choose another --out")
    # Sphinx writes into WORK/html (MyST-NB keeps the executed outputs' files beside it, in WORK/jupyter_execute);
    # the finished site is then copied to OUT. A site built in the other mode (or from a subset, or from executed
    # copies) is thrown away, not patched.
    html = work / "html"
    stamp = f"{mode} {' '.join(sorted(args.only or []))}{' executed' if executed else ''}".strip()
    marker = html / ".sdlib-site"
    if html.exists() and (not marker.exists() or marker.read_text() != stamp):
        shutil.rmtree(html)
        shutil.rmtree(work / "doctrees", ignore_errors=True)

    started = time.time()
    src = work / "src"
    stage(src, args.only, work, executed)
    times = work / "executed_times.json"
    if records is None:
        times.unlink(missing_ok=True)
    else:
        write_if_changed(times, json.dumps(records, indent=1) + "\n")

    # A lesson that runs in the build trains from scratch: its checkpoints go to a folder of the build, emptied
    # first, never the learner's runs/ (whose finished training a lesson would resume instead of running).
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)

    # Every kernel the build starts runs site/kernel_startup.py (static widgets, text progress bars).
    ipython_dir = work / "ipython"
    write_if_changed(ipython_dir / "profile_default" / "startup" / "00-sdlib-site.py",
                     (SITE / "kernel_startup.py").read_bytes())
    env = dict(os.environ, SDLIB_QUICK="1" if quick else "0", SDLIB_NO_WIDGETS="1", IPYTHONDIR=str(ipython_dir),
               SDLIB_SITE_ROOT=str(ROOT), SDLIB_SITE_CACHE=str(cache), SDLIB_RUNS_DIR=str(runs),
               SDLIB_SITE_ALLOW_ERRORS="1" if args.allow_errors else "0",
               SDLIB_SITE_EXECUTED=str(times) if records is not None else "")
    env.pop("MPLBACKEND", None)      # the kernels' own inline backend, not a test run's Agg (no figures)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(SITE), "-d", str(work / "doctrees"),
               "--keep-going", str(src), str(html)]
    print(f"site/build.py: {mode} mode; sphinx-build into {html}", flush=True)
    result = subprocess.run(command, env=env, cwd=ROOT)
    if result.returncode != 0:
        print(f"site/build.py: sphinx-build failed (exit {result.returncode})", file=sys.stderr)
        return result.returncode
    marker.write_text(stamp)
    slides, kept = out / "slides", work / "slides.kept"      # python site/slides.py's output survives a rebuild
    if slides.is_dir():
        shutil.rmtree(kept, ignore_errors=True)
        shutil.move(str(slides), str(kept))
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(html, out)
    if kept.is_dir():
        shutil.move(str(kept), str(slides))
    print(f"site/build.py: built {out} in {time.time() - started:.0f} s ({mode} mode); open {out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
