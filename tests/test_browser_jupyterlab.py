"""The learner's first five minutes, in a real browser: JupyterLab serves copies of the lessons on 127.0.0.1
(with a token, quick mode), headless Chromium opens lessons 02, 07 and 08, runs every cell above an explorer
and the explorer itself, drags its slider with the mouse, and checks that the picture in the output area
changed (two screenshots compared) and that no widget failed to display.

The browser is the system's Chromium through Playwright (see tests/test_site.py: without one these tests skip
with advice on installing it). JupyterLab runs copies of the notebooks in a temporary folder, because it saves
the outputs into what it runs; it is stopped whatever happens. Screenshots: _build/test-artefacts/jupyterlab/.
"""
from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from urllib.request import urlopen

import numpy as np
import pytest
from helpers import ARTEFACTS, ROOT

# lesson -> text that identifies the explorer's cell (the first code cell holding it)
EXPLORERS = {
    "02_forward_noising": "explorer.widget(t=250)",
    "07_classifier_free_guidance": "explorer.widget(w=DEFAULT_W)",
    "08_latent_diffusion": "PipelineExplorer(pipe,",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, browser):  # (the browser first: no server is started without one)
    """`jupyter lab` on 127.0.0.1 with a token, over copies of the lessons, in the quick mode."""
    root = tmp_path_factory.mktemp("lab")
    for name in EXPLORERS:
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", root / f"{name}.ipynb")
    # No "Would you like to get notified about official Jupyter news?" toast over the screenshots
    settings = root / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}\n')
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, SDLIB_QUICK="1", JUPYTER_RUNTIME_DIR=str(root / ".runtime"),
               SDLIB_RUNS_DIR=str(root / "runs"))     # the lessons train afresh, not from a learner's runs/
    env.pop("MPLBACKEND", None)                 # the kernels draw with their inline backend, as a learner's do
    env.pop("SDLIB_NO_WIDGETS", None)           # SDLIB_MNIST_DIR passes through, for offline machines
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.workspaces_dir={root / '.workspaces'}",
               f"--LabApp.user_settings_dir={root / '.settings'}",
               "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(root / "jupyterlab.log", "w")
    server = subprocess.Popen(command, env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 90
        while True:
            assert server.poll() is None, f"jupyter lab exited:\n{(root / 'jupyterlab.log').read_text()[-3000:]}"
            try:
                with urlopen(f"{url}api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "jupyter lab did not answer within 90 s"
            time.sleep(0.5)
        yield url, token, root
    finally:
        server.terminate()                      # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        try:
            os.killpg(server.pid, signal.SIGKILL)   # any kernel of this server's session still alive
        except (ProcessLookupError, PermissionError):
            pass
        log.close()
        (ARTEFACTS / "jupyterlab").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "jupyterlab.log", ARTEFACTS / "jupyterlab" / "jupyterlab.log")


FIND_PANEL = ("(path) => Array.from(window.jupyterapp.shell.widgets('main'))"
              ".find(w => w.context && w.context.path === path)")

RUN_UP_TO = """async ([needle, path]) => {
  const app = window.jupyterapp;
  const panel = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
  app.shell.activateById(panel.id);
  await panel.context.ready;
  await panel.sessionContext.ready;
  const nb = panel.content;
  const index = nb.widgets.findIndex(c => c.model.type === 'code' && c.model.sharedModel.getSource().includes(needle));
  if (index < 0) return {error: 'no code cell holds ' + needle};
  nb.activeCellIndex = index;
  nb.deselectAll();
  const above = await app.commands.execute('notebook:run-all-above');
  const itself = await app.commands.execute('notebook:run-cell');
  const errors = [];
  nb.widgets.slice(0, index + 1).forEach((cell, i) => {
    if (cell.model.type !== 'code') return;
    for (let k = 0; k < cell.model.outputs.length; k++) {
      const out = cell.model.outputs.get(k);
      if (out.type === 'error') errors.push('cell ' + i + ': ' + out.toJSON().ename + ': ' + out.toJSON().evalue);
    }
  });
  nb.widgets[index].node.setAttribute('data-explorer', 'yes');
  return {index, above, itself, errors};
}"""


def picture(locator):
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("L"), dtype=np.int16)


@pytest.mark.parametrize("lesson", list(EXPLORERS))
def test_explorer_slider_redraws_in_jupyterlab(lab, browser, lesson):
    url, token, _ = lab
    shots = ARTEFACTS / "jupyterlab"
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob(f"{lesson}-*"):
        old.unlink()
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{url}lab/tree/{lesson}.ipynb?token={token}", wait_until="load")
        page.wait_for_function(f"(path) => window.jupyterapp && ({FIND_PANEL})(path)", arg=f"{lesson}.ipynb",
                               timeout=90_000)
        result = page.evaluate(RUN_UP_TO, [EXPLORERS[lesson], f"{lesson}.ipynb"])
        assert "error" not in result, result
        assert not result["errors"], f"{lesson}: cells raised in JupyterLab: {result['errors']}"
        assert result["above"] and result["itself"], f"{lesson}: JupyterLab did not run the cells: {result}"

        cell = page.locator("[data-explorer=yes]")
        area = cell.locator(".jp-Cell-outputArea").first
        slider = cell.locator(".widget-slider").first
        slider.wait_for(timeout=60_000)
        image = area.locator(".widget-output img").first      # the figure inside the widget's Output
        image.wait_for(timeout=120_000)
        area.scroll_into_view_if_needed()
        assert page.get_by_text("Error displaying widget").count() == 0, f"{lesson}: a widget failed to display"
        readout = slider.locator(".widget-readout").first.inner_text()
        before_src = image.get_attribute("src")
        before = picture(area)
        page.screenshot(path=str(shots / f"{lesson}-before.png"))

        track = slider.locator(".noUi-target, .slider-container").first.bounding_box()
        handle = slider.locator(".noUi-handle").first.bounding_box()
        page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
        page.mouse.down()
        page.mouse.move(track["x"] + 0.9 * track["width"], handle["y"] + handle["height"] / 2, steps=12)
        page.mouse.up()
        page.wait_for_function(
            """([selector, old]) => { const img = document.querySelector(selector);
                                      return img && img.complete && img.getAttribute('src') !== old; }""",
            arg=["[data-explorer=yes] .jp-Cell-outputArea .widget-output img", before_src],
            timeout=120_000)
        page.wait_for_timeout(300)
        after = picture(area)
        page.screenshot(path=str(shots / f"{lesson}-after.png"))
        moved = slider.locator(".widget-readout").first.inner_text()
        assert moved != readout, f"{lesson}: the slider did not move ({readout})"
        changed = before.shape != after.shape or np.mean(np.abs(before - after) > 8) > 0.005
        assert changed, f"{lesson}: the output area looks the same after the slider moved from {readout} to {moved}"
        assert page.get_by_text("Error displaying widget").count() == 0, f"{lesson}: a widget failed to display"
        assert not errors, f"{lesson}: JavaScript errors: {errors[:5]}"
    except Exception:
        page.screenshot(path=str(shots / f"{lesson}-failed.png"))
        (shots / f"{lesson}-failed.html").write_text(page.content())
        raise
    finally:
        context.close()
        shut_down_kernels(url, token)


def shut_down_kernels(url, token):
    """Stop every kernel of the server (each lesson's test leaves one), through JupyterLab's REST API."""
    import json
    from urllib.request import Request

    with urlopen(Request(f"{url}api/kernels", headers={"Authorization": f"token {token}"}), timeout=10) as r:
        kernels = json.load(r)
    for kernel in kernels:
        request = Request(f"{url}api/kernels/{kernel['id']}", method="DELETE",
                          headers={"Authorization": f"token {token}"})
        with urlopen(request, timeout=30):
            pass
