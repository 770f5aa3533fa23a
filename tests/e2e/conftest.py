"""Real-browser harness: `streamlit run app.py` on 127.0.0.1 and Debian's chromium via playwright.

The server runs on a free port with its own FAIRVLM_HOME (a copy of the small demo set as the
built-in demo, so nothing is generated or trained). The browser is the system chromium
(``shutil.which("chromium")``), never a playwright download. Console errors and page errors
are collected per page; screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from app_server import CHROMIUM_ARGS, chromium_path
from app_server import app_server as serve

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
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


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, small_demo_dir: Path
               ) -> Iterator[AppServer]:
    """`streamlit run app.py` on a free 127.0.0.1 port, with the small demo as built-in demo."""
    home = tmp_path_factory.mktemp("e2e-home")
    shutil.copytree(small_demo_dir, home / "demo" / "data")
    log = home / "streamlit.log"
    env = {"FAIRVLM_HOME": str(home), "FAIRVLM_DATA_ROOTS": str(home)}
    try:
        with serve(env, log, timeout_s=SERVER_START_TIMEOUT_S) as server:
            yield AppServer(url=server.url, home=home, log=log)
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's chromium, headless, driven by playwright."""
    try:
        executable = chromium_path()
    except RuntimeError as error:
        pytest.skip(str(error))
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=list(CHROMIUM_ARGS))
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
