"""The report's plain-data forms, its plain-language summary, and the no-torch promise."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np

from fairvlm.metrics import audit_attribute, summarize

NAMES = {0: "Asian", 1: "Black", 2: "White"}


def _report(shift=(1.0, 1.0, 1.0), seed: int = 0, n: int = 1500, **options):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + y * np.asarray(shift)[codes] - 0.5)))
    return audit_attribute(y, scores, codes, group_names=NAMES, attribute="race",
                           n_bootstrap=300, seed=seed, **options)


def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def test_to_dict_is_strict_json_with_none_for_undefined() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 3, 400)
    y = rng.integers(0, 2, 400)
    y[codes == 2] = 0
    report = audit_attribute(y, rng.random(400), codes, group_names=NAMES, n_bootstrap=50)
    data = report.to_dict(include_roc=True)
    json.dumps(data, allow_nan=False)
    assert all(type(v) in (int, float, str, bool, type(None)) for v in _walk(data))
    assert all(not (isinstance(v, float) and math.isnan(v)) for v in _walk(data))
    white = data["groups"][2]
    assert white["auc"]["value"] is None and white["roc"] is None and white["tpr"] is None
    assert len(data["groups"][0]["roc"]["fpr"]) == len(data["groups"][0]["roc"]["tpr"])
    assert "roc" not in report.to_dict()["groups"][0]


def test_to_frame_has_one_row_per_group_with_the_documented_columns() -> None:
    report = _report()
    frame = report.to_frame()
    assert list(frame.columns) == ["group", "n", "positives", "shown", "auc", "ci_low",
                                   "ci_high", "tpr", "fpr", "selection_rate", "accuracy", "note"]
    assert frame["group"].tolist() == ["Asian", "Black", "White"]
    assert frame["n"].sum() == report.n
    assert (frame["ci_low"] <= frame["auc"]).all() and (frame["auc"] <= frame["ci_high"]).all()


def test_summary_names_the_worst_group_and_a_real_gap() -> None:
    report = _report(shift=(1.2, 0.3, 1.2))
    text = summarize(report)
    assert report.worst_group == "Black"
    assert text.startswith("race: Black has the lowest AUC")
    assert "exceeds bootstrap noise" in text


def test_summary_says_when_the_gap_is_within_noise() -> None:
    report = _report(shift=(1.0, 1.0, 1.0), seed=3, n=600)
    assert report.auc_gap.ci_low == 0.0
    assert "within bootstrap noise" in summarize(report)


def test_summary_mentions_hidden_groups() -> None:
    report = _report(min_n=600)
    text = summarize(report)
    assert "hidden from the summary" in text
    assert "no between-group comparison" in text


def test_metrics_do_not_import_torch() -> None:
    code = ("import sys, fairvlm.metrics, numpy as np; "
            "fairvlm.metrics.audit_attribute(np.array([0, 1, 0, 1]), np.arange(4.0), "
            "np.array([0, 0, 1, 1]), group_names={0: 'a', 1: 'b'}, n_bootstrap=5); "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
