"""A real JupyterLab server on 127.0.0.1 for browser tests, and Chromium to look at it."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.redis_server import free_port

CHROMIUM = os.environ.get("ORCHESTRA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


class JupyterLab:
    """``jupyter lab`` in a folder of its own, with a random token."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "jupyter.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> JupyterLab:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        env.pop("JUPYTER_CONFIG_DIR", None)
        # settings and workspaces of our own: no "get news?" prompt, nothing from earlier runs
        settings = self.root / ".lab-settings"
        news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True, exist_ok=True)
        tracker.write_text(json.dumps({"autoStartDefaultKernel": True}))  # no "Select Kernel"
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self.root / ".lab-workspaces")
        env["PYTHONUNBUFFERED"] = "1"  # the log is read when a test fails
        args = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.disable_check_xsrf=True",
            "--allow-root",  # CI runs as root
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",  # tests switch themes through its commands
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(
                    f"{self.url}/api/status?token={self.token}", timeout=2
                ) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def notebook_url(self, name: str, *, front: str = "lab") -> str:
        """The notebook in JupyterLab (``front="lab"``) or in Notebook 7 (``"notebook"``)."""
        if front == "notebook":
            return f"{self.url}/notebooks/{name}?token={self.token}"
        # reset: only this notebook open (one server serves many tests, and JupyterLab
        # would otherwise reopen every notebook the last test had open)
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"


def write_notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path.write_text(nbformat.writes(nb))


@contextmanager
def chromium_page(viewport: dict[str, int] | None = None) -> Any:
    """A page in headless Debian Chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        raise RuntimeError(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1500, "height": 1100})
            yield page
        finally:
            browser.close()


def run_cell(page: Any, index: int, *, wait: bool = True, timeout: float = 90_000) -> Any:
    """Execute one notebook cell through the UI and wait until it has finished; returns it.

    The cell is selected by its prompt and run with the toolbar's Run button (key
    presses right after the page loads can land nowhere). Right after a notebook
    opens, JupyterLab can report the kernel idle before the first execute request
    is really delivered; a cell whose prompt shows neither ``[*]`` nor ``[n]``
    shortly after is run again (at most three times).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    run_button = page.locator(
        ".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']"
    ).first
    # the prompt is looked up on every check: JupyterLab may re-create a cell's DOM
    prompt_shows = """([i, pattern]) => new RegExp(pattern).test(
        document.querySelectorAll('.jp-Notebook .jp-Cell')[i]
            ?.querySelector('.jp-InputArea-prompt')?.textContent ?? '')"""
    for attempt in range(3):
        dialog = page.locator(".jp-Dialog .jp-mod-accept")
        if dialog.count():  # e.g. "Select Kernel" when the session raced its kernel
            dialog.first.click()
        cell.locator(".jp-InputPrompt").click()  # select the cell (command mode)
        run_button.click()
        try:
            page.wait_for_function(prompt_shows, arg=[index, r"\[(\*|\d+)\]"], timeout=10_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    if wait:
        page.wait_for_function(prompt_shows, arg=[index, r"\[\d+\]"], timeout=timeout)
    return cell
