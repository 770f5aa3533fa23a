"""The report files: strict JSON, a CSV that reproduces the metrics, a self-contained HTML."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fairvlm.audit import run_audit
from fairvlm.config import AuditConfig
from fairvlm.data import load_dataset
from fairvlm.models import load_model
from fairvlm.report import MINIMUM_INTERVAL, SYNTHETIC_NOTE, render_html, write_report

PREDICTION_COLUMNS = ["id", "split", "label", "probability", "prediction", "similarity", "loss",
                      "rank", "margin"]


@pytest.fixture(scope="module")
def result(small_demo_dir, tiny_checkpoint):
    config = AuditConfig(attributes=("race", "language", "race&gender"), min_n=5,
                         n_bootstrap=100, n_permutations=10)
    return run_audit(load_dataset(small_demo_dir),
                     load_model(str(tiny_checkpoint), device="cpu"), config)


@pytest.fixture(scope="module")
def files(result, tmp_path_factory):
    return write_report(result, tmp_path_factory.mktemp("report") / "nested" / "out")


def _strict_json(text: str):
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_metrics_json_holds_every_section(files, result) -> None:
    data = _strict_json(files.metrics.read_text())
    assert set(data) >= {"config", "data", "model", "overall", "threshold", "attributes",
                         "fingerprints", "versions", "warnings", "created"}
    assert set(data["fingerprints"]) == {"data", "model", "config"}
    assert [a["name"] for a in data["attributes"]] == ["race", "language", "race&gender"]
    views = data["attributes"][0]["distributions"]
    assert [v["statistic"] for v in views] == ["loss", "similarity"]
    assert data["threshold"]["value"] == result.threshold.value


def test_predictions_csv_reproduces_the_group_aucs(files, small_demo_dir) -> None:
    frame = pd.read_csv(files.predictions, keep_default_na=False)
    n_test = len(list((small_demo_dir / "Test").glob("*.npz")))
    assert len(frame) == n_test
    assert list(frame.columns[:len(PREDICTION_COLUMNS)]) == PREDICTION_COLUMNS
    data = _strict_json(files.metrics.read_text())
    checked = 0
    for attribute in data["attributes"]:
        for group in attribute["metrics"]["groups"]:
            if group["auc"]["value"] is None:
                continue
            members = frame[frame[attribute["name"]] == group["name"]]
            assert group["n"] == len(members)
            assert group["auc"]["value"] == pytest.approx(
                roc_auc_score(members["label"], members["probability"]), abs=1e-12)
            checked += 1
    assert checked >= 3


def test_html_is_self_contained_with_one_plotly_bundle(files, result) -> None:
    html = files.html.read_text(encoding="utf-8")
    bundles = re.findall(r"plotly\.js v\d+\.\d+\.\d+", html)
    assert len(set(bundles)) == 1 and html.count("window.PlotlyConfig") == 1
    assert not re.search(r"<script[^>]+src=", html), "report must not load external scripts"
    assert not re.search(r"<link[^>]+href=\"?https?:", html)
    n_figures = sum(2 + len(a.distributions) for a in result.attributes)
    assert html.count('class="plotly-graph-div"') == n_figures
    for audited in result.attributes:
        assert f"<h2>{audited.name}</h2>".replace("&", "&amp;") in html
    for fingerprint in result.fingerprints.values():
        assert fingerprint in html


def test_text_from_the_data_is_escaped(result) -> None:
    hostile = "<script>alert('x')</script>"
    data = {**result.data, "name": hostile, "source": hostile}
    html = render_html(replace(result, data=data, warnings=(hostile,)))
    assert hostile not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_threshold_and_worst_group_read_in_words(files, result) -> None:
    """The threshold method is named as the app names it, the worst-group row says which
    group is lowest and that its interval is the minimum's."""
    html = files.html.read_text(encoding="utf-8")
    threshold = result.threshold
    assert threshold.method == "youden"
    assert (f"<dt>threshold</dt><dd>{threshold.value:.4g}, Youden&#x27;s J on validation "
            f"({threshold.n_chosen_on} pairs of val)</dd>") in html
    assert (f"At threshold {threshold.value:.4g} (Youden&#x27;s J on validation); ") in html
    assert "(youden);" not in html and "by Youden" not in html
    worst = [audited.report.worst_group for audited in result.attributes
             if audited.report.worst_group]
    assert worst
    for group in worst:
        assert f"<td>worst-group AUC (lowest: {group})</td>".replace("&", "&amp;") in html
    assert html.count(MINIMUM_INTERVAL.replace("'", "&#x27;")) == len(result.attributes)


def test_synthetic_data_are_marked_at_the_top(result) -> None:
    assert result.data["synthetic"] is True  # the generated demo (its demo_config.json)
    marked = render_html(result)
    assert marked.count(SYNTHETIC_NOTE) == 1
    assert marked.index(SYNTHETIC_NOTE) < marked.index("<dl class='facts'>")
    unmarked = render_html(replace(result, data={**result.data, "synthetic": False}))
    assert SYNTHETIC_NOTE not in unmarked  # other data: no claim either way
