"""chainrule.live inside JupyterLab, in headless Chromium: the page shows in the cell and the notebook stays free.

Starts a throwaway JupyterLab (its own port, token, config and runtime folders under the test's
temporary folder), opens a notebook that calls ``chainrule.live``, runs its cells, and watches the
step counter of the page inside the cell's iframe go up while the next cell runs.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_browser import CHROMIUM_ARGS, MISSING, chromium_path

try:
    import jupyterlab  # noqa: F401
except ImportError:
    MISSING = MISSING or "JupyterLab is not installed (pip install jupyterlab)"

pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SRC = Path(__file__).resolve().parent.parent / "src"
CELLS = [
    "import random\nimport chainrule\nfrom chainrule import MLP\nfrom chainrule.data import make_moons\n"
    "random.seed(0)\nX, y = make_moons(100, noise=0.1, seed=0)\n"
    "model = MLP(2, [8, 8, 1], activation='tanh', output_activation='linear')\n"
    "session = chainrule.live(model, X, y, lr=0.1, speed=30)",
    "print('notebook free at step', session.step)",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
                           "outputs": [], "source": source} for i, source in enumerate(CELLS)],
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
                "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "live.ipynb").write_text(json.dumps(notebook))
    port, token = _free_port(), "chainrule-live-test"
    env = dict(os.environ, PYTHONPATH=str(SRC), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), IPYTHONDIR=str(tmp_path / "ipython"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
               "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "lab.log").read_text()[-2000:]
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/lab/tree/live.ipynb?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_live_page_shows_in_jupyterlab_and_the_notebook_stays_free(lab, tmp_path):
    """The cell shows the live page in an iframe; it trains while the next cell runs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(lab)
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        prompt = page.locator(".jp-Cell").first.locator(".jp-InputPrompt")
        deadline = time.monotonic() + 120
        while not any(ch == "*" or ch.isdigit() for ch in prompt.inner_text()):
            # A run pressed before the kernel's connection is complete is dropped: press it again.
            assert time.monotonic() < deadline, "JupyterLab never ran the first cell"
            page.locator(".jp-Cell").first.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            page.wait_for_timeout(2000)
        try:
            page.wait_for_selector("iframe[title='chainrule live']", timeout=120_000)
        finally:
            page.screenshot(path=str(tmp_path / "after-first-cell.png"))
        frame = page.frame_locator("iframe[title='chainrule live']")

        def step() -> int:
            text = frame.locator("#step").inner_text(timeout=30_000)
            return int(text) if text.isdigit() else -1

        deadline = time.monotonic() + 120
        first = step()
        while first < 1:
            assert time.monotonic() < deadline, "the page in the cell never showed a training step"
            page.wait_for_timeout(100)
            first = step()
        page.locator(".jp-Cell").nth(1).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")          # the next cell runs while training goes on
        page.wait_for_function("document.body.innerText.includes('notebook free at step')", timeout=60_000)
        while step() < first + 5:
            assert time.monotonic() < deadline, "training in the cell stopped"
            page.wait_for_timeout(100)
        frame.locator("#graph g.node").first.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "jupyterlab.png"))
        browser.close()
