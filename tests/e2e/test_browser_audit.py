"""Audit and Bad pairs in a real browser: load the tiny checkpoint, wait for the audit's plotly
charts, tag a pair, check the decisions file; no console errors; a screenshot of each page."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
LOAD_TIMEOUT_MS = 120_000


def _wait_until_idle(page) -> None:
    """Wait until Streamlit's "running" indicator has gone."""
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached",
                           timeout=LOAD_TIMEOUT_MS)


def _load_model(page, checkpoint: Path) -> None:
    """Choose "other" on the Data & model page, type the checkpoint path and load it."""
    page.get_by_role("heading", name="Counts per split and group").wait_for(
        timeout=LOAD_TIMEOUT_MS)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Model").first.click()
    page.get_by_role("option", name=re.compile(r"^other")).click()
    spec = page.get_by_label("Spec")
    spec.fill(str(checkpoint))
    spec.press("Enter")
    _wait_until_idle(page)
    page.get_by_role("button", name="Load model").click()
    page.get_by_text("In use:").wait_for(timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)


def test_audit_and_bad_pairs_pages(app_server, browser_page, tiny_checkpoint: Path) -> None:
    checkpoint = app_server.home / "models" / "tiny.safetensors"
    checkpoint.parent.mkdir(exist_ok=True)
    shutil.copy(tiny_checkpoint, checkpoint)
    page = browser_page.page
    page.goto(app_server.url, wait_until="domcontentloaded")
    _load_model(page, checkpoint)

    page.get_by_role("link", name="Audit").click()
    page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 3
    assert page.get_by_text("AUC by race").first.is_visible()
    assert page.locator('[data-testid="stException"]').count() == 0
    browser_page.screenshot("audit-page")

    page.get_by_role("link", name="Bad pairs").click()
    page.get_by_text("0 training pairs to leave out of the next fine-tune").wait_for(
        timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)
    page.get_by_role("radio", name="Exclude").first.click()  # a segmented-control option
    page.get_by_text(re.compile(  # a training pair, or one of validation or test (kept)
        r"1 training pair to leave out|1 marked validation or test pair")).first.wait_for(
        timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    browser_page.screenshot("bad-pairs-page")

    files = list((app_server.home / "decisions").glob("*.csv"))
    assert len(files) == 1
    with files[0].open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["decision"] for row in rows] == ["exclude"]
    assert browser_page.errors == []
