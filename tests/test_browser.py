"""End-to-end check in a real browser: JupyterLab runs notebook 04 and its widget reacts to the ε slider.

Starts ``jupyter lab`` on a free loopback port (serving a temporary copy of ``notebooks/``, so the
committed notebooks are never modified), drives headless Chromium with Playwright, runs every cell,
reads the clipped-surrogate plot, moves the ε slider with the keyboard and checks that the plot is
redrawn and that no cell produced an error.

Run with ``make test-browser`` (installs Debian's ``chromium`` if it is missing) or
``pytest -m browser tests``. Playwright's own browser download is not needed: the system Chromium
is used (``$PSFT_EDU_CHROMIUM`` or ``$CHROMIUM`` may name another executable).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "04_ppo_clip.ipynb"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT = 90  # seconds until the server answers
KERNEL_TIMEOUT_MS = 90_000  # until the kernel is idle after start
RUN_ALL_TIMEOUT = 180  # seconds for every cell of the notebook
REDRAW_TIMEOUT_MS = 30_000  # for the plot to change after the slider moves


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable, or None."""
    for var in ("PSFT_EDU_CHROMIUM", "CHROMIUM"):
        path = os.environ.get(var)
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return path
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    for path in ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/snap/bin/chromium"):
        if Path(path).is_file() and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LabServer:
    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no Chromium executable found: install Debian's `chromium` (`make test-browser` does) or set "
            "$PSFT_EDU_CHROMIUM"
        )
    return path


@pytest.fixture(scope="module")
def lab(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:  # noqa: ARG001
    """A JupyterLab server on a copy of the notebooks (``chromium`` first: no browser, no server)."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    shutil.copytree(REPO_ROOT / "notebooks", root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    for sub in ("runtime", "config", "data", "settings", "workspaces"):
        (base / sub).mkdir()
    token = secrets.token_hex(16)
    port = free_port()
    env = dict(os.environ)
    env.update(
        PSFT_EDU_PRESET="tiny",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TQDM_DISABLE="1",
        # Private Jupyter folders: a user's own kernels, settings or passwords must not leak in.
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        JUPYTER_CONFIG_DIR=str(base / "config"),
        JUPYTER_DATA_DIR=str(base / "data"),
        PYTHONUNBUFFERED="1",
    )
    env.pop("MPLBACKEND", None)  # the kernel should use the inline backend, as in a normal session
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.user_settings_dir={base / 'settings'}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = base / "server.log"
    with open(log, "wb") as log_handle:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, root, log, process)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {process.returncode} before answering:\n{server.log_tail()}")
            try:
                server.api("/api/status", timeout=2.0)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer within {SERVER_START_TIMEOUT} s:\n{server.log_tail()}")
                time.sleep(0.5)
        yield server
    finally:
        _stop(server)


def _stop(server: LabServer) -> None:
    """Shut the server (and with it its kernels) down; kill the process group if it lingers."""
    process = server.process
    if process.poll() is None:
        try:
            server.api("/api/shutdown", method="POST", timeout=5.0)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)  # the server's own session: the server and any kernel left behind
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


# JavaScript run in the page (JupyterLab exposes the application as window.jupyterapp).
JS_NOTEBOOK_OPEN = """(name) => {
    const app = window.jupyterapp;
    const w = app && app.shell && app.shell.currentWidget;
    return !!(w && w.context && w.context.path.endsWith(name) && w.sessionContext && w.content);
}"""

JS_KERNEL_STATUS = """async () => {
    const w = window.jupyterapp.shell.currentWidget;
    const ready = Promise.all([w.context.ready, w.sessionContext.ready]).then(() => 'ready');
    const waited = await Promise.race([ready, new Promise(resolve => setTimeout(() => resolve('waiting'), 5000))]);
    if (waited !== 'ready') return 'starting';
    const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
    return kernel ? kernel.status : 'no kernel';
}"""

JS_RUN_STATE = """() => {
    const w = window.jupyterapp.shell.currentWidget;
    const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
    const cells = w.content.widgets.filter(c => c.model.type === 'code');
    const errors = [];
    let done = 0;
    for (const [i, cell] of cells.entries()) {
        if (cell.model.executionCount !== null && cell.model.executionCount !== undefined) done += 1;
        const outputs = cell.model.outputs;
        for (let k = 0; k < outputs.length; k++) {
            const out = outputs.get(k).toJSON();
            if (out.output_type === 'error') errors.push(`code cell ${i}: ${out.ename}: ${out.evalue}`);
        }
    }
    return {status: kernel ? kernel.status : 'no kernel', total: cells.length, done: done, errors: errors};
}"""


def test_clip_explorer_reacts_to_epsilon_in_jupyterlab(lab: LabServer, chromium: str) -> None:
    from playwright.sync_api import (
        sync_playwright,
    )  # a test extra; imported here so unit-test collection never needs it

    page_errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            try:
                _run_notebook_and_move_slider(page, lab)
            except Exception:
                shot = lab.root.parent / "failure.png"
                try:
                    page.screenshot(path=str(shot), full_page=True)
                except Exception:  # noqa: BLE001 (best effort)
                    pass
                print(f"screenshot: {shot}\npage errors: {page_errors[-10:]}\nserver log:\n{lab.log_tail()}")
                raise
        finally:
            browser.close()


def _run_notebook_and_move_slider(page, lab: LabServer) -> None:
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}", wait_until="domcontentloaded", timeout=90_000)
    page.wait_for_function(JS_NOTEBOOK_OPEN, arg=NOTEBOOK, timeout=90_000)

    deadline = time.monotonic() + KERNEL_TIMEOUT_MS / 1000
    status = page.evaluate(JS_KERNEL_STATUS)
    while status != "idle":
        assert time.monotonic() < deadline, f"kernel not idle after {KERNEL_TIMEOUT_MS // 1000} s (status {status!r})"
        time.sleep(0.5)
        status = page.evaluate(JS_KERNEL_STATUS)

    # Start from a clean slate (the saved outputs include widget views of an old kernel), then run all.
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while True:
        state = page.evaluate(JS_RUN_STATE)
        assert not state["errors"], f"error output in the notebook: {state['errors']}"
        if state["done"] == state["total"] and state["status"] == "idle":
            break
        assert time.monotonic() < deadline, f"cells not finished after {RUN_ALL_TIMEOUT} s: {state}"
        time.sleep(1.0)

    explorer = page.locator(".psft-clip-explorer")
    explorer.wait_for(state="visible", timeout=30_000)
    explorer.scroll_into_view_if_needed()
    plot = explorer.locator("img.psft-clip-plot")
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 100 && img.getAttribute('src')",
        arg=plot.element_handle(),
        timeout=30_000,
    )
    src_before = plot.get_attribute("src")
    png_before = plot.screenshot()
    readout = explorer.locator(".widget-html").first.inner_text()
    assert "0.80, 1.20" in readout, f"unexpected readout before moving the slider: {readout!r}"

    handle = explorer.locator(".psft-epsilon .noUi-handle")
    handle.focus()
    for _ in range(10):  # step 0.01 each: ε 0.20 -> 0.30
        handle.press("ArrowRight")
    page.wait_for_function(
        "([img, before]) => img.getAttribute('src') !== before && img.complete && img.naturalWidth > 100",
        arg=[plot.element_handle(), src_before],
        timeout=REDRAW_TIMEOUT_MS,
    )
    page.wait_for_timeout(300)  # let the new image paint
    png_after = plot.screenshot()
    assert png_after != png_before, "the plot's pixels did not change after moving the ε slider"
    readout_after = explorer.locator(".widget-html").first.inner_text()
    assert readout_after != readout, "the readout did not change after moving the ε slider"
    epsilon_shown = explorer.locator(".psft-epsilon .widget-readout").inner_text().strip()
    assert float(epsilon_shown) > 0.2, f"slider readout {epsilon_shown!r}: the ε slider did not move"

    body = page.locator("body").inner_text()
    assert "Error displaying widget" not in body, "a widget failed to render"
    state = page.evaluate(JS_RUN_STATE)
    assert not state["errors"], f"error output in the notebook: {state['errors']}"
