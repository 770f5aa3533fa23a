"""The Data & model page in a real browser: tables and sample images appear, no console errors."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e
LOAD_TIMEOUT_MS = 90_000


def _wait_until_idle(page) -> None:
    """Wait until Streamlit's "running" indicator has gone."""
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached",
                           timeout=LOAD_TIMEOUT_MS)


def test_data_page_shows_tables_and_images(app_server, browser_page) -> None:
    page = browser_page.page
    page.goto(app_server.url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Counts per split and group").wait_for(
        timeout=LOAD_TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stDataFrame"]', timeout=LOAD_TIMEOUT_MS)
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="stImage"] img')]
                 .filter(img => img.complete && img.naturalWidth > 0).length >= 8""",
        timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)

    assert page.get_by_text("Built-in demo").first.is_visible()
    assert page.get_by_text("Demo data are synthetic").first.is_visible()
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "240"
    assert page.locator('[data-testid="stDataFrame"]').count() >= 2
    assert page.locator('[data-testid="stException"]').count() == 0
    browser_page.screenshot("data-page")
    assert browser_page.errors == []
