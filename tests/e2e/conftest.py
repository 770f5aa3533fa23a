"""Real-browser harness: `streamlit run app.py` on 127.0.0.1 and Debian's chromium via playwright.

The server runs on a free port with its own FAIRVLM_HOME (a copy of the small demo set as the
built-in demo, so nothing is generated or trained). The browser is the system chromium
(``shutil.which("chromium")``), never a playwright download. Console errors and page errors
are collected per page; screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
SERVER_START_TIMEOUT_S = 90.0


@dataclass
class AppServer:
    """A running Streamlit server: its base URL, FAIRVLM_HOME and log file."""

    url: str
    home: Path
    log: Path


@dataclass
class BrowserPage:
    """A playwright page and the console/page errors seen on it."""

    page: object
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> Path:
        """Save the whole page (Streamlit scrolls inside its main block, so the viewport is
        stretched to the content's height for the shot) as ``<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        viewport = self.page.viewport_size
        height = self.page.evaluate(
            """() => Math.max(...[...document.querySelectorAll(
                   '[data-testid="stMain"], [data-testid="stSidebarContent"]')]
                   .map(element => element.scrollHeight), window.innerHeight)""")
        self.page.set_viewport_size({"width": viewport["width"], "height": int(height)})
        self.page.wait_for_timeout(500)
        self.page.screenshot(path=str(target), full_page=True)
        self.page.set_viewport_size(viewport)
        return target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"streamlit did not answer /_stcore/health in {SERVER_START_TIMEOUT_S:.0f} s:\n"
                f"{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, small_demo_dir: Path
               ) -> Iterator[AppServer]:
    """`streamlit run app.py` on a free 127.0.0.1 port, with the small demo as built-in demo."""
    home = tmp_path_factory.mktemp("e2e-home")
    shutil.copytree(small_demo_dir, home / "demo" / "data")
    port = _free_port()
    log = home / "streamlit.log"
    env = {**os.environ, "FAIRVLM_HOME": str(home), "FAIRVLM_DATA_ROOTS": str(home)}
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port)]
    with log.open("wb") as log_handle:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield AppServer(url=url, home=home, log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's chromium, headless, driven by playwright."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def browser_page(browser) -> Iterator[BrowserPage]:
    """A fresh 1400 x 1000 page that records console errors and uncaught page errors."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    recorded = BrowserPage(page)
    page.on("console", lambda message: recorded.errors.append(message.text)
            if message.type == "error" else None)
    page.on("pageerror", lambda error: recorded.errors.append(str(error)))
    try:
        yield recorded
    finally:
        context.close()
