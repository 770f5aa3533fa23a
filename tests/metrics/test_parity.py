"""DPD and DEOdds against fairlearn 0.15; accuracy and ES-Acc against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate_difference,
    true_positive_rate_difference,
)
from sklearn.metrics import accuracy_score

from fairvlm.metrics import audit_attribute

NAMES = {0: "a", 1: "b", 2: "c", 3: "d"}


def _audit(y, scores, codes, threshold=0.5, **options):
    return audit_attribute(y, scores, codes, group_names=NAMES, min_n=1, n_bootstrap=0,
                           threshold=threshold, **options)


@pytest.mark.parametrize("seed", range(8))
def test_dpd_and_deodds_equal_fairlearn_when_every_rate_is_defined(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(2, 5))
    codes = rng.integers(0, n_groups, 400)
    y = rng.integers(0, 2, codes.size)
    scores = rng.random(codes.size) * 0.6 + 0.3 * y + 0.05 * codes
    threshold = float(rng.uniform(0.3, 0.7))
    y_pred = (scores >= threshold).astype(int)
    report = _audit(y, scores, codes, threshold)
    features = {"sensitive_features": codes}
    assert report.dpd.value == pytest.approx(
        demographic_parity_difference(y, y_pred, **features), abs=1e-12)
    assert report.deodds.value == pytest.approx(
        equalized_odds_difference(y, y_pred, **features), abs=1e-12)
    assert report.tpr_gap.value == pytest.approx(
        true_positive_rate_difference(y, y_pred, **features), abs=1e-12)
    assert report.fpr_gap.value == pytest.approx(
        false_positive_rate_difference(y, y_pred, **features), abs=1e-12)
    assert report.deodds_fairlearn.value == pytest.approx(report.deodds.value, abs=1e-15)
    assert report.deodds.note == ""


def test_issue_toy_example_group_without_positives() -> None:
    """fairlearn counts the missing TPR as 0 (EOD 0.5); fairvlm leaves it out and says so."""
    y = np.array([0, 0, 1, 1, 0, 0])
    y_pred = np.array([0, 1, 1, 0, 0, 0])
    codes = np.array([0, 0, 0, 0, 1, 1])
    assert equalized_odds_difference(y, y_pred, sensitive_features=codes) == 0.5
    report = _audit(y, y_pred.astype(float), codes)
    # TPR is defined only for group a, so the TPR gap is undefined; FPR: a 0.5, b 0.0.
    assert report.tpr_gap.value is None
    assert report.fpr_gap.value == pytest.approx(0.5)
    assert report.deodds.value == pytest.approx(0.5)
    assert report.deodds_fairlearn.value == pytest.approx(0.5)
    assert "TPR of b (no positives)" in report.deodds.note
    assert report.group("b").tpr is None and report.group("b").fpr == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_undefined_rate_left_out_and_fairlearn_convention_reported_beside(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    codes = rng.integers(0, 3, 300)
    y = rng.integers(0, 2, codes.size)
    y[codes == 2] = 0  # group c: no positives, so its TPR is undefined
    scores = rng.random(codes.size) * 0.5 + 0.35 * y + 0.15 * (codes == 2)
    y_pred = (scores >= 0.5).astype(int)
    report = _audit(y, scores, codes)

    tpr = {c: y_pred[(codes == c) & (y == 1)].mean() for c in (0, 1)}
    fpr = {c: y_pred[(codes == c) & (y == 0)].mean() for c in (0, 1, 2)}
    tpr_gap = abs(tpr[0] - tpr[1])
    fpr_gap = max(fpr.values()) - min(fpr.values())
    assert report.tpr_gap.value == pytest.approx(tpr_gap, abs=1e-12)
    assert report.fpr_gap.value == pytest.approx(fpr_gap, abs=1e-12)
    assert report.deodds.value == pytest.approx(max(tpr_gap, fpr_gap), abs=1e-12)
    assert "TPR of c (no positives)" in report.deodds.note
    assert "fairlearn" in report.deodds.note
    assert report.deodds_fairlearn.value == pytest.approx(
        equalized_odds_difference(y, y_pred, sensitive_features=codes), abs=1e-12)
    assert report.dpd.value == pytest.approx(
        demographic_parity_difference(y, y_pred, sensitive_features=codes), abs=1e-12)
    assert report.group("c").auc.value is None
    assert "no positives" in report.group("c").note


def test_accuracy_and_es_acc_equal_hand_computation_on_sklearn_accuracies() -> None:
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 4, 800)
    y = rng.integers(0, 2, codes.size)
    scores = rng.random(codes.size) * 0.7 + 0.25 * y - 0.05 * codes
    y_pred = scores >= 0.45
    report = _audit(y, scores, codes, threshold=0.45)
    overall = accuracy_score(y, y_pred)
    groups = [accuracy_score(y[codes == c], y_pred[codes == c]) for c in range(4)]
    assert report.accuracy.value == pytest.approx(overall, abs=1e-12)
    assert report.es_acc.value == pytest.approx(
        overall / (1 + sum(abs(g - overall) for g in groups)), abs=1e-12)
    for code, name in NAMES.items():
        mask = codes == code
        group = report.group(name)
        assert group.accuracy == pytest.approx(groups[code], abs=1e-12)
        assert group.selection_rate == pytest.approx(y_pred[mask].mean(), abs=1e-12)
        assert group.tpr == pytest.approx(y_pred[mask & (y == 1)].mean(), abs=1e-12)
        assert group.fpr == pytest.approx(y_pred[mask & (y == 0)].mean(), abs=1e-12)


def test_threshold_rule_is_score_at_least_threshold() -> None:
    y = np.array([0, 1, 0, 1])
    scores = np.array([0.2, 0.5, 0.5, 0.9])
    report = _audit(y, scores, np.array([0, 0, 1, 1]), threshold=0.5)
    assert report.group("a").selection_rate == 0.5  # 0.5 counts as positive
    assert report.group("b").selection_rate == 1.0
