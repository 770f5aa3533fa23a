"""report.html from `fairvlm audit` in headless chromium: every chart renders, no console errors,
and nothing is fetched from the network (the report must open offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairvlm.cli import main

pytestmark = pytest.mark.e2e
RENDER_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def report_dir(small_demo_dir: Path, tiny_checkpoint: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("e2e-report")
    status = main(["audit", "--data", str(small_demo_dir), "--model", str(tiny_checkpoint),
                   "--out", str(out), "--attribute", "race", "--attribute", "race&gender",
                   "--min-n", "5", "--bootstrap", "100", "--permutations", "10", "--quiet"])
    assert status == 0
    return out


def test_report_renders_every_chart_offline(report_dir: Path, browser_page) -> None:
    page = browser_page.page
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto((report_dir / "report.html").as_uri(), wait_until="load")
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=RENDER_TIMEOUT_MS)

    metrics = json.loads((report_dir / "metrics.json").read_text())
    expected = sum(2 + len(a["distributions"]) for a in metrics["attributes"])
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length === {expected}",
                           timeout=RENDER_TIMEOUT_MS)
    traces = page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '.js-plotly-plot')].map(div => [div.id, div.querySelectorAll('g.trace').length]))""")
    assert len(traces) == expected and all(count > 0 for count in traces.values()), traces
    violins = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .map(div => div.querySelectorAll('g.trace.violins path.violin').length)
        .filter(count => count > 0)""")
    assert violins == [1 + sum(g["n"] > 0 for g in view["groups"])
                       for a in metrics["attributes"] for view in a["distributions"]]
    assert page.locator("#figure-0 .bars .point path").count() == len(
        metrics["attributes"][0]["metrics"]["groups"])
    assert page.get_by_role("heading", name="race&gender").is_visible()
    browser_page.screenshot("audit-report")
    assert browser_page.errors == []
    assert all(url.startswith(("file:", "data:", "blob:", "about:")) for url in requests), \
        [url for url in requests if not url.startswith("file:")]
