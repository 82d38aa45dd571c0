"""The course website (site/build.py), built once per test session in the quick mode and read in headless
Chromium: every page loads from a local server with HTTP 200 and no JavaScript error, every internal link
and anchor resolves, each lesson page shows at least three of its figures, MathJax and search work, and no
request leaves 127.0.0.1 (no CDN, no web fonts).

The browser is the system's Chromium (Debian: `apt-get install -y chromium`), driven by Playwright (the test
extra installs it; it downloads no browser). Without a browser these tests skip with that advice; with
SDLIB_REQUIRE_BROWSER=1 (set by .ci/run) they fail instead. Screenshots of the lesson pages are kept in
_build/test-artefacts/site/ (git-ignored).
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse
from urllib.request import urlopen

import pytest
from helpers import ARTEFACTS, NOTEBOOKS, ROOT


class Watch:
    """A browser context that refuses every request to a host other than 127.0.0.1 and records console errors."""

    def __init__(self, browser, viewport=(1280, 900)):
        self.foreign, self.errors, self.failed, self.fonts = [], [], [], []
        self.context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        self.context.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if route.request.resource_type == "font":
            self.fonts.append(url)
        if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).hostname != "127.0.0.1":
            self.foreign.append(url)
            route.abort()
        else:
            route.continue_()

    def page(self):
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url}: {r.failure}"))
        return page


def test_render_strip_stacks_one_frame_per_setting():
    """sdlib.classroom.widgets.render_strip, the static stand-in for a slider: one frame per setting, top to bottom."""
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from sdlib.classroom.widgets import NoiseExplorer, render_strip
    from sdlib.schedules import NoiseSchedule

    explorer = NoiseExplorer(torch.zeros(1, 8, 8), NoiseSchedule.linear(T=100), seed=0)
    one = explorer.render(10)
    one.canvas.draw()
    height = one.canvas.buffer_rgba().shape[0]
    plt.close(one)
    strip = render_strip(explorer, [10, 90], ["t = 10", "t = 90"])
    strip.canvas.draw()
    pixels = np.asarray(strip.canvas.buffer_rgba())
    plt.close(strip)
    assert explorer.renders == 3
    assert 2 * height <= pixels.shape[0] < 2.5 * height
    top, bottom = pixels[: pixels.shape[0] // 2], pixels[pixels.shape[0] // 2:]
    assert np.abs(top[: bottom.shape[0]].astype(int) - bottom[: top.shape[0]].astype(int)).mean() > 1
    with pytest.raises(ValueError, match="at least one"):
        render_strip(explorer, [])
    with pytest.raises(ValueError, match="one label per setting"):
        render_strip(explorer, [10], ["a", "b"])
    with pytest.raises(TypeError, match="render"):
        render_strip(object(), [10])


# --------------------------------------------------------------------------------------------------- the build


def readme_block(marker: str) -> str:
    """The bash block under MARKER in the README, as .ci/run reads the test command."""
    text = (ROOT / "README.md").read_text()
    after = text.split(marker, 1)[1]
    assert after.lstrip().startswith("```bash"), f"no bash block right under {marker} in README.md"
    return after.split("```bash", 1)[1].split("```", 1)[0].strip()


def test_readme_gives_the_site_command():
    command = readme_block("<!-- site-command -->")
    assert 'pip install -e ".[site]"' in command and command.endswith("python site/build.py"), command


@pytest.fixture(scope="session")
def site(tmp_path_factory, request):
    """The site, built once per session in the quick mode by the README's site command (which installs the
    site extra), into a temporary folder. Where this session's nbval run has just executed every lesson
    (conftest.py writes them to _build/executed/quick/), the site is built from those notebooks (--executed);
    otherwise, e.g. `pytest tests/test_site.py` alone, the build runs every lesson itself with a fresh cache."""
    pytest.importorskip("myst_nb", reason="the site needs its extra: pip install -e \".[site]\"")
    if os.environ.get("SDLIB_TEST_SITE"):          # working on these tests: check a site built before
        out = Path(os.environ["SDLIB_TEST_SITE"])
        return out, (out.parent / "build.log").read_text() if (out.parent / "build.log").exists() else ""
    work = tmp_path_factory.mktemp("site")
    # `python` and `pip` of the command are this interpreter's (its venv's bin/ first on PATH)
    env = dict(os.environ, SDLIB_QUICK="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    command = f'{readme_block("<!-- site-command -->")} --out "{work / "_site"}" --cache "{work / "cache"}" ' \
              f'--work "{work / "work"}"'
    executed = getattr(request.config, "_sdlib_executed", {})
    if sorted(executed) == sorted(p.stem for p in NOTEBOOKS):
        command += f' --executed "{next(iter(executed.values())).parent}"'
    started = time.time()
    result = subprocess.run(["bash", "-c", f"set -euo pipefail; {command}"], env=env, cwd=ROOT,
                            capture_output=True, text=True)
    log = result.stdout + result.stderr + f"\n[test_site] the build took {time.time() - started:.0f} s\n"
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "site-build.log").write_text(log)
    assert result.returncode == 0, f"the README's site command failed:\n{log[-6000:]}"
    return work / "_site", log


def test_every_lesson_has_a_page_named_after_its_notebook(site):
    out, _ = site
    for path in NOTEBOOKS:
        assert (out / "lessons" / f"{path.stem}.html").is_file(), f"no page for {path.name}"
    index = (out / "index.html").read_text()
    for path in NOTEBOOKS:
        assert f'href="lessons/{path.stem}.html"' in index, f"the home page's lesson map does not link {path.stem}"
    assert "you will be able to" in index and "reading" in index, "the home page lacks the lesson map's columns"


def test_the_build_records_each_lessons_execution_time(site):
    out, log = site
    times = json.loads((out / "execution_times.json").read_text())
    assert times["mode"] == "quick"
    assert sorted(times["lessons"]) == sorted(p.stem for p in NOTEBOOKS)
    for name, row in times["lessons"].items():
        assert row["succeeded"] and row["seconds"] > 0, (name, row)
        assert name in log.split("Execution time of each lesson")[-1], f"{name}'s time was not printed"


def test_the_build_runs_a_lesson_itself_and_then_reuses_its_cache(tmp_path):
    """Without --executed the build runs the lessons (here one short lesson), records its time, and a second
    build takes the outputs from the cache instead of running the lesson again."""
    pytest.importorskip("myst_nb", reason="the site needs its extra: pip install -e \".[site]\"")
    env = dict(os.environ, SDLIB_QUICK="1")
    runs = []
    for build in ("first", "second"):            # the second from scratch (its own pages and Sphinx state), same cache
        command = [sys.executable, str(ROOT / "site" / "build.py"), "--only", "06_unet_attention", "--out",
                   str(tmp_path / build / "_site"), "--cache", str(tmp_path / "cache"), "--work", str(tmp_path / build)]
        result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        row = json.loads((tmp_path / build / "_site" / "execution_times.json").read_text())["lessons"]["06_unet_attention"]
        assert row["succeeded"] and row["seconds"] > 0, row
        runs.append(row["executed_at"])
        time.sleep(1.1)                          # a second run would have a later time stamp
    assert runs[0] == runs[1], f"the second build ran the lesson again instead of using the cache: {runs}"
    page = (tmp_path / "second" / "_site" / "lessons" / "06_unet_attention.html").read_text()
    assert page.count('<img alt=') >= 3, "the executed lesson's figures are not on its page"


def test_the_build_refuses_executed_copies_of_another_version(tmp_path):
    """--executed takes only notebooks executed from the lessons as they are now."""
    pytest.importorskip("myst_nb", reason="the site needs its extra: pip install -e \".[site]\"")
    name = "06_unet_attention"
    shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", tmp_path / f"{name}.ipynb")
    (tmp_path / f"{name}.json").write_text(json.dumps({"seconds": 1.0, "source_sha256": "0" * 64}))
    result = subprocess.run([sys.executable, str(ROOT / "site" / "build.py"), "--only", name, "--executed",
                             str(tmp_path), "--out", str(tmp_path / "_site"), "--work", str(tmp_path / "work")],
                            env=dict(os.environ, SDLIB_QUICK="1"), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "another version of the notebook" in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "_site").exists()


def test_reference_pages_and_the_student_archive(site):
    out, _ = site
    schedules = (out / "api" / "sdlib.schedules.html").read_text()
    assert "NoiseSchedule" in schedules and "add_noise" in schedules, "the API page lacks sdlib.schedules' members"
    assert "python -m sdlib.recipes.ddpm" in (out / "recipes.html").read_text()
    for page in ("measured", "scaling"):
        assert (out / f"{page}.html").is_file()
    archives = list((out / "_downloads").rglob("student-notebooks.zip"))
    assert len(archives) == 1, archives
    with zipfile.ZipFile(archives[0]) as z:
        names = sorted(Path(n).stem for n in z.namelist())
        assert names == sorted(p.stem for p in NOTEBOOKS)
        for path in NOTEBOOKS:
            text = z.read(f"student-notebooks/{path.name}").decode()
            assert "BEGIN SOLUTION" not in text, f"the student copy of {path.name} holds a solution"
            if "BEGIN SOLUTION" in path.read_text():
                assert "NotImplementedError" in text, f"the student copy of {path.name} has no stub"


# --------------------------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="session")
def server(site):
    """The built site from http://127.0.0.1:PORT/, with every response's status recorded."""
    out, _ = site
    statuses = {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(out), **kwargs)

        def log_request(self, code="-", size="-"):
            statuses[self.path.split("?")[0]] = int(code) if str(code).isdigit() else code

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", statuses
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_every_page_in_chromium(browser, server):
    """Crawl the site from its home page in Chromium: every page HTTP 200, no console error, no request off
    127.0.0.1, no font loaded, no failed request; every internal link (and its #anchor) resolves; each lesson
    page shows at least three PNG figures in its outputs (an appendix one), loaded; a screenshot of each lesson
    page is kept."""
    base, statuses = server
    watch = Watch(browser)
    page = watch.page()
    todo, seen, anchors, ids = [base + "index.html"], set(), [], {}
    lessons = {p.stem for p in NOTEBOOKS}
    shots = ARTEFACTS / "site"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)
    figures = {}
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, f"{url}: HTTP {response and response.status}"
        ids[url] = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
        for href in page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))"):
            target = urljoin(url, href)
            if not target.startswith(base):
                continue
            path, fragment = urldefrag(target)
            if fragment:
                anchors.append((url, path, fragment))
            if path.endswith(".html"):
                todo.append(path)
            elif path.endswith("/"):
                todo.append(path + "index.html")
            else:
                with urlopen(path) as r:          # a download (zip, json): fetched, not navigated to
                    assert r.status == 200 and r.read(), f"{url} links {path}, which is empty or missing"
        name = Path(urlparse(url).path).stem
        if urlparse(url).path.startswith("/lessons/") and name in lessons:
            page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise",
                                   timeout=30_000)
            shown = page.eval_on_selector_all(
                ".cell_output img", "els => els.filter(i => /\\.png$/.test(i.getAttribute('src')) && i.complete "
                "&& i.naturalWidth > 50 && i.naturalHeight > 50).length")
            figures[name] = shown
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    assert not watch.foreign, f"requests left 127.0.0.1 (CDN, web fonts?): {sorted(set(watch.foreign))[:10]}"
    assert not watch.fonts, f"pages load web fonts: {sorted(set(watch.fonts))[:10]}"
    assert not watch.errors, f"JavaScript console errors: {watch.errors[:10]}"
    assert not watch.failed, f"failed requests: {watch.failed[:10]}"
    bad = {p: s for p, s in statuses.items() if s != 200 and s != 304}
    assert not bad, f"the server answered these requests with an error: {bad}"
    assert sorted(figures) == sorted(lessons), f"lesson pages not reached from the home page: {lessons - set(figures)}"
    # a lesson (01_...) shows at least three figures; an optional appendix (03b_...) at least one (03b has one)
    few = {name: n for name, n in figures.items() if n < (3 if name[2] == "_" else 1)}
    assert not few, f"pages showing too few PNG figures in their outputs (lessons need 3, appendices 1): {few}"
    broken = [(page_url, path, fragment) for page_url, path, fragment in anchors
              if path in ids and fragment not in ids[path]]
    assert not broken, f"links to missing anchors (page, target, #anchor): {broken[:10]}"
    watch.context.close()


def test_math_and_search_work_offline(browser, server):
    """MathJax (vendored) typesets a lesson's formulas, and the search page finds a term, all from 127.0.0.1."""
    base, _ = server
    watch = Watch(browser)
    page = watch.page()
    page.goto(base + "lessons/02_forward_noising.html", wait_until="load")
    page.wait_for_selector("mjx-container", timeout=30_000)
    assert page.locator("mjx-container").count() > 10
    assert "/_static/mathjax/" in page.eval_on_selector("script[src*='mathjax']", "s => s.src")
    page.goto(base + "search.html?q=posterior", wait_until="load")
    page.wait_for_selector("#search-results ul.search li", timeout=30_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(a => a.getAttribute('href'))")
    assert any("02_forward_noising" in h for h in hits), hits
    assert not watch.foreign, sorted(set(watch.foreign))
    assert not watch.fonts, sorted(set(watch.fonts))
    assert not watch.errors, watch.errors
    watch.context.close()
