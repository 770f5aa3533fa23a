"""Fine-tune and Compare in a real browser: start a one-epoch fine-tune of the tiny checkpoint,
watch it reach "done" through the live fragment, compare it with the starting model; no
console errors; a screenshot of each page."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
LOAD_TIMEOUT_MS = 120_000
RUN_TIMEOUT_MS = 180_000


def _wait_until_idle(page) -> None:
    """Wait until Streamlit's "running" indicator has gone."""
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached",
                           timeout=LOAD_TIMEOUT_MS)


def _choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(option)}")).click()


def _type(page, label: str, value: str) -> None:
    """Type ``value`` into the number or text input labelled ``label``."""
    field = page.get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")


def test_fine_tune_to_done_then_compare(app_server, browser_page, tiny_checkpoint: Path
                                        ) -> None:
    checkpoint = app_server.home / "models" / "tiny-fine-tune.safetensors"
    checkpoint.parent.mkdir(exist_ok=True)
    shutil.copy(tiny_checkpoint, checkpoint)
    page = browser_page.page
    page.goto(app_server.url, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Counts per split and group").wait_for(
        timeout=LOAD_TIMEOUT_MS)
    _choose(page, "Model", "other")
    _type(page, "Spec", str(checkpoint))
    _wait_until_idle(page)
    page.get_by_role("button", name="Load model").click()
    page.get_by_text("In use:").wait_for(timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)

    page.get_by_role("link", name="Fine-tune").click()
    page.get_by_role("button", name="Start fine-tune").wait_for(timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)
    _type(page, "Epochs", "1")
    _choose(page, "Trained", "projections only")
    page.get_by_text("More settings").click()
    _type(page, "Smallest group in ES-AUC", "1")
    _type(page, "Bootstrap resamples", "100")
    page.get_by_role("button", name="Start fine-tune").click()
    page.get_by_text(re.compile(r"^Done: epoch 1 selected")).wait_for(timeout=RUN_TIMEOUT_MS)
    _wait_until_idle(page)
    page.wait_for_function(  # the loss and validation line charts have been drawn
        """() => document.querySelectorAll(
               '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg')
               .length >= 2""", timeout=LOAD_TIMEOUT_MS)
    browser_page.screenshot("fine-tune-page")
    assert page.locator('[data-testid="stException"]').count() == 0
    labels = page.locator('[data-testid="stMetricLabel"]').all_inner_texts()
    assert {"Validation AUC", "Test AUC", "Test ES-AUC"} <= set(labels)
    runs = list((app_server.home / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "eval.json").is_file()

    page.get_by_role("link", name="Compare & report").click()
    page.get_by_role("button", name="Compare").wait_for(timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)
    _type(page, "Minimum group size", "1")
    _type(page, "Bootstrap resamples", "200")
    page.get_by_role("button", name="Compare").click()
    page.get_by_role("heading", name="Side by side").wait_for(timeout=LOAD_TIMEOUT_MS)
    page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=LOAD_TIMEOUT_MS)
    _wait_until_idle(page)
    browser_page.screenshot("compare-page")
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text(f"run {runs[0].name}").first.is_visible()
    assert browser_page.errors == []
