"""A headless Chromium (Debian's, driven by Playwright) on a JupyterLab server of the core env, for tests/ui.

One JupyterLab server and one browser per test module; each test writes a small notebook into the server's root,
opens it, runs its cells and watches the page. Everything runs in the students' language (CAMP_LANG=zh) and
offline. Screenshots go to a run folder under $CAMP_HOME/runs (`browser-tests-…`), printed at the start.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat

from camp.runtime import kernel
from tests.conftest import ROOT, subprocess_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Offline and quiet: no first-run wizard, no component updates, no sync, no QUIC; no GPU here.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
LANG_ENV = {"CAMP_LANG": "zh"}


def missing() -> str | None:
    """What is missing to run the browser tests (make test installs it: `make browser-deps`)."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: run `make browser-deps` (apt: chromium fonts-wqy-zenhei)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed in the core env: run `make browser-deps`"
    if not kernel.installed(sys.prefix):
        return f"the {kernel.NAME!r} kernel is not installed in {sys.prefix}: run `make setup`"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)


class Lab:
    """A JupyterLab server (its own process group) serving `root`."""

    def __init__(self, root: Path, log: Path):
        self.root, self.port, self.token = root, free_port(), secrets.token_hex(16)
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"]
        if os.geteuid() == 0:  # dev containers run as root
            cmd.append("--allow-root")
        # no "get notified about Jupyter news?" toast over the page (and no fetch of it: the tests run offline)
        settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        env = subprocess_env(**LANG_ENV, JUPYTER_CONFIG_DIR=str(root / ".jupyter-config"),
                             JUPYTERLAB_SETTINGS_DIR=str(root / ".lab-settings"),
                             JUPYTERLAB_WORKSPACES_DIR=str(root / ".lab-workspaces"))
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                        f"{self.base}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"JupyterLab did not start; see {log}")
            time.sleep(0.5)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        # ?reset: a fresh workspace, so each page shows just this notebook
        return f"{self.base}/lab/tree/{notebook}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """End every notebook session (a test's kernel holds a model and CPU the next test needs)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.base}/api/sessions?token={self.token}", timeout=10) as r:
            sessions = json.loads(r.read())
        for session in sessions:
            req = urllib.request.Request(f"{self.base}/api/sessions/{session['id']}?token={self.token}",
                                         method="DELETE")
            with contextlib.suppress(OSError):
                opener.open(req, timeout=30).close()

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


def write_notebook(root: Path, name: str, *cells: str) -> str:
    """A notebook of code cells on the course kernel (as the lessons' metadata names it)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel.NAME, "display_name": kernel.DISPLAY_NAME, "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, root / name)
    return name


def open_notebook(page, lab: Lab, name: str, timeout: float = 120_000) -> None:
    """Open `name` and wait until its kernel is up and idle (the status bar reads "Idle")."""
    page.goto(lab.url(name))
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout)
    # the notebook's own toolbar names its kernel (the Running panel lists other notebooks' kernels, hidden)
    page.locator(".jp-NotebookPanel-toolbar").get_by_text(kernel.DISPLAY_NAME).first.wait_for(timeout=timeout)
    wait_idle(page, timeout)


def wait_idle(page, timeout: float = 120_000) -> None:
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-StatusBar-TextItem')].some(e => /Idle|空闲/.test(e.textContent))",
        timeout=timeout)


def run_cell(page, index: int = 0) -> None:
    """Click into cell `index` and press Shift+Enter, as a student does; again (as a student would) when the cell did
    not start: right after a notebook opens, JupyterLab may still move the focus (to the file browser), and the key
    press is lost."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt").element_handle()
    for _ in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        try:  # "[ ]:" until the cell is queued, then "[*]:", then "[1]:"
            page.wait_for_function("(el) => !/\\[\\s*\\]/.test(el.textContent)", arg=prompt, timeout=5_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"cell {index} did not start after three Shift+Enter presses")


def cell_output(page, index: int = 0):
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea")


def stderr_outputs(page, index: int = 0) -> list[str]:
    """Texts a cell's output shows on the error (stderr) background."""
    return cell_output(page, index).locator("[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


def record_texts(page, selector: str, key: str) -> None:
    """From now on, remember (in window.__camp[key]) every distinct text of the elements matching `selector`,
    with the time it was first seen: what a student saw change on the page, in order."""
    page.evaluate(
        """([selector, key]) => {
            window.__camp = window.__camp || {};
            const seen = window.__camp[key] = [];
            const look = () => document.querySelectorAll(selector).forEach((e, i) => {
                const text = e.textContent;
                if (!seen.some(s => s.i === i && s.text === text)) seen.push({i, text, t: performance.now()});
            });
            new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
            look();
        }""",
        [selector, key])


def recorded(page, key: str) -> list[dict]:
    return page.evaluate("key => (window.__camp || {})[key] || []", key)


def dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=1)


__all__ = ["CHROMIUM", "LANG_ENV", "Lab", "ROOT", "cell_output", "dump", "launch_browser", "missing", "open_notebook",
           "record_texts", "recorded", "run_cell", "stderr_outputs", "wait_idle", "write_notebook"]
