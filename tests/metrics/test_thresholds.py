"""Threshold choice on a validation set against brute-force search."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from fairvlm.errors import ConfigError, DataError
from fairvlm.metrics import audit_attribute, choose_threshold


def _validation(seed: int, levels: int | None):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 250)
    y[:2] = [0, 1]
    if levels is None:
        return y, rng.normal(size=y.size) + 0.9 * y
    return y, rng.integers(0, levels, y.size) / levels + 0.2 * y


def _youden(y, predicted) -> float:
    return predicted[y == 1].mean() - predicted[y == 0].mean()


def _brute_force_best(y, scores, criterion) -> float:
    return max(criterion(y, scores >= t) for t in np.unique(scores))


@pytest.mark.parametrize("levels", [None, 6])
@pytest.mark.parametrize("seed", range(4))
def test_youden_threshold_reaches_the_brute_force_maximum(seed: int, levels: int | None) -> None:
    y, scores = _validation(seed, levels)
    threshold = choose_threshold(y, scores, method="youden")
    assert _youden(y, scores >= threshold) == pytest.approx(
        _brute_force_best(y, scores, _youden), abs=1e-12)
    assert threshold not in set(scores.tolist()) or threshold == scores.min()


@pytest.mark.parametrize("levels", [None, 6])
@pytest.mark.parametrize("seed", range(4))
def test_f1_threshold_reaches_the_brute_force_maximum(seed: int, levels: int | None) -> None:
    y, scores = _validation(seed, levels)
    threshold = choose_threshold(y, scores, method="f1")

    def f1(y_true, predicted):
        return f1_score(y_true, predicted, zero_division=0.0)

    assert f1(y, scores >= threshold) == pytest.approx(_brute_force_best(y, scores, f1), abs=1e-12)


def test_threshold_sits_between_validation_scores() -> None:
    y = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.3, 0.7, 0.9])
    assert choose_threshold(y, scores, method="youden") == pytest.approx(0.5)


def test_single_class_validation_is_a_one_line_data_error() -> None:
    with pytest.raises(DataError, match="only class 0") as caught:
        choose_threshold(np.zeros(5), np.arange(5.0))
    assert "\n" not in str(caught.value)


def test_unknown_method_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="youden, f1"):
        choose_threshold(np.array([0, 1]), np.array([0.1, 0.9]), method="median")


def test_report_records_the_threshold_and_how_it_was_chosen() -> None:
    y_val, s_val = _validation(1, None)
    threshold = choose_threshold(y_val, s_val, method="f1")
    report = audit_attribute(y_val, s_val, np.zeros(y_val.size, dtype=int),
                             group_names={0: "all"}, threshold=threshold,
                             threshold_method="f1", n_bootstrap=0)
    assert report.to_dict()["threshold"] == {"value": threshold, "method": "f1"}
    with pytest.raises(ConfigError, match="threshold_method"):
        audit_attribute(y_val, s_val, np.zeros(y_val.size, dtype=int), group_names={0: "all"},
                        threshold_method="best")
