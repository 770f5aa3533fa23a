"""AUC and ROC points against scikit-learn, including ties and bootstrap-style weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fairvlm.metrics import audit_attribute, roc_auc, roc_curve
from fairvlm.metrics._auc import weighted_auc


def _random_case(rng: np.random.Generator, n: int, levels: int | None):
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    if levels is None:
        scores = rng.normal(size=n) + 0.7 * y
    else:  # few distinct values: many ties, within and across classes
        scores = rng.integers(0, levels, n) / levels + 0.1 * y * rng.integers(0, 2, n)
    return y, scores


@pytest.mark.parametrize("levels", [None, 2, 5, 40])
@pytest.mark.parametrize("n", [2, 7, 100, 1500])
def test_roc_auc_equals_sklearn(n: int, levels: int | None) -> None:
    rng = np.random.default_rng(n * 100 + (levels or 0))
    for _ in range(5):
        y, scores = _random_case(rng, n, levels)
        assert roc_auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_roc_auc_single_class_is_nan_not_a_crash() -> None:
    assert np.isnan(roc_auc(np.zeros(5), np.arange(5.0)))
    assert np.isnan(roc_auc(np.ones(5), np.arange(5.0)))


@pytest.mark.parametrize("levels", [None, 3])
def test_weighted_rows_equal_sklearn_on_repeated_data(levels: int | None) -> None:
    """A row of draw counts must give the AUC of the data with each pair repeated that often."""
    rng = np.random.default_rng(3)
    y, scores = _random_case(rng, 80, levels)
    counts = rng.integers(0, 4, size=(6, y.size))
    got = weighted_auc(counts, y, scores)
    for row, value in zip(counts, got, strict=True):
        expected = roc_auc_score(np.repeat(y, row), np.repeat(scores, row))
        assert value == pytest.approx(expected, abs=1e-12)
        assert value == pytest.approx(roc_auc_score(y, scores, sample_weight=row), abs=1e-12)


@pytest.mark.parametrize("levels", [None, 4])
def test_roc_curve_equals_sklearn(levels: int | None) -> None:
    rng = np.random.default_rng(11)
    y, scores = _random_case(rng, 300, levels)
    fpr, tpr, thresholds = sk_roc_curve(y, scores, drop_intermediate=False)
    curve = roc_curve(y, scores)
    np.testing.assert_allclose(curve.fpr, fpr, atol=1e-12)
    np.testing.assert_allclose(curve.tpr, tpr, atol=1e-12)
    np.testing.assert_array_equal(curve.thresholds, thresholds)
    assert curve.to_dict()["thresholds"][0] is None


def test_group_aucs_and_roc_points_equal_sklearn_per_group() -> None:
    rng = np.random.default_rng(5)
    y, scores = _random_case(rng, 900, 30)
    codes = rng.integers(0, 3, y.size)
    report = audit_attribute(y, scores, codes, group_names={0: "a", 1: "b", 2: "c"},
                             min_n=1, n_bootstrap=0)
    assert report.auc.value == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    for code, name in enumerate("abc"):
        mask = codes == code
        group = report.group(name)
        assert group.auc.value == pytest.approx(roc_auc_score(y[mask], scores[mask]), abs=1e-12)
        fpr, tpr, _ = sk_roc_curve(y[mask], scores[mask], drop_intermediate=False)
        np.testing.assert_allclose(group.roc.fpr, fpr, atol=1e-12)
        np.testing.assert_allclose(group.roc.tpr, tpr, atol=1e-12)
