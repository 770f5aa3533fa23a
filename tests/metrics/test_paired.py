"""paired_changes against a direct recomputation (scikit-learn AUCs on the explicit resamples)
and against the difference of two independent audits."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fairvlm.errors import ConfigError, DataError
from fairvlm.metrics import Change, audit_attribute, paired_changes
from fairvlm.metrics._bootstrap import draw_resample_indices

NAMES = {0: "A", 1: "B", 2: "C"}


def _data(n: int = 400, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    groups = rng.choice(3, n, p=[0.2, 0.3, 0.5])
    base = labels * 0.8 + rng.normal(0, 1, n)
    new = base + 0.6 * labels * (groups == 1) + rng.normal(0, 0.3, n)
    return labels, base, new, groups


def _es_auc(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    overall = roc_auc_score(labels, scores)
    spread = sum(abs(roc_auc_score(labels[groups == g], scores[groups == g]) - overall)
                 for g in NAMES)
    return overall / (1 + spread)


def test_intervals_are_percentiles_of_the_resampled_differences() -> None:
    labels, base, new, groups = _data()
    changes = paired_changes(labels, base, new, groups, group_names=NAMES, n_bootstrap=200,
                             seed=3)
    deltas: dict[str, list[float]] = {"auc": [], "es_auc": [], "B": []}
    for rows in draw_resample_indices(labels.size, 200, seed=3):
        y, g = labels[rows], groups[rows]
        deltas["auc"].append(roc_auc_score(y, new[rows]) - roc_auc_score(y, base[rows]))
        deltas["es_auc"].append(_es_auc(y, new[rows], g) - _es_auc(y, base[rows], g))
        in_b = g == 1
        deltas["B"].append(roc_auc_score(y[in_b], new[rows][in_b])
                           - roc_auc_score(y[in_b], base[rows][in_b]))
    for change, samples in ((changes.summary["auc"], deltas["auc"]),
                            (changes.summary["es_auc"], deltas["es_auc"]),
                            (changes.group_auc["B"], deltas["B"])):
        low, high = np.quantile(samples, [0.025, 0.975])
        assert (change.ci_low, change.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert changes.summary["auc"].delta == pytest.approx(
        roc_auc_score(labels, new) - roc_auc_score(labels, base), abs=1e-12)
    assert changes.group_auc["B"].sign == 1  # group B's scores were made better


def test_point_changes_are_differences_of_two_audits() -> None:
    labels, base, new, groups = _data(seed=1)
    settings = {"group_names": NAMES, "min_n": 30, "n_bootstrap": 0}
    before = audit_attribute(labels, 1 / (1 + np.exp(-base)), groups, threshold=0.4, **settings)
    after = audit_attribute(labels, 1 / (1 + np.exp(-new)), groups, threshold=0.6, **settings)
    changes = paired_changes(labels, 1 / (1 + np.exp(-base)), 1 / (1 + np.exp(-new)), groups,
                             base_threshold=0.4, new_threshold=0.6, **settings)
    for name in ("auc", "es_auc", "worst_group_auc", "accuracy", "auc_gap", "dpd", "deodds"):
        expected = getattr(after, name).value - getattr(before, name).value
        assert changes.summary[name].delta == pytest.approx(expected, abs=1e-12), name
        assert changes.summary[name].ci_low is None and changes.summary[name].sign is None
    for group_before, group_after in zip(before.groups, after.groups, strict=True):
        assert changes.group_auc[group_before.name].delta == pytest.approx(
            group_after.auc.value - group_before.auc.value, abs=1e-12)


def test_the_same_scores_change_nothing_measurably() -> None:
    labels, base, _, groups = _data(seed=2)
    changes = paired_changes(labels, base, base.copy(), groups, group_names=NAMES,
                             n_bootstrap=50)
    for change in (*changes.summary.values(), *changes.group_auc.values()):
        assert (change.delta, change.ci_low, change.ci_high, change.sign) == (0.0, 0.0, 0.0, 0)


def test_hidden_and_one_class_groups() -> None:
    labels, base, new, groups = _data(seed=4)
    groups = groups.copy()
    groups[:3] = 7  # an unlisted code: its own small group, hidden below min_n
    changes = paired_changes(labels, base, new, groups, group_names=NAMES, n_bootstrap=20)
    assert set(changes.group_auc) == {"A", "B", "C"}
    single = np.where(groups == 0, 1, labels)  # group A holds positives only
    changes = paired_changes(single, base, new, groups, group_names=NAMES, n_bootstrap=20)
    assert changes.group_auc["A"].delta is None
    assert changes.summary["es_auc"].delta is not None  # B and C still define it


def test_text_and_sign() -> None:
    assert Change(0.0123, -0.004, 0.0271).text() == "+0.012 [-0.004, +0.027]"
    assert Change(-0.0031, -0.0062, -0.0002).text() == "-0.0031 [-0.0062, -0.0002]"
    assert Change(-0.0031, -0.0062, -0.0002).delta_text == "-0.0031"  # the interval's decimals
    assert Change(0.0123, -0.004, 0.0271).delta_text == "+0.012"
    assert Change(None).delta_text == "undefined"
    assert Change(0.0, 0.0, 0.0).text() == "+0.000 [+0.000, +0.000]"
    assert Change(-0.05, -0.08, -0.01).sign == -1
    assert Change(0.05).text() == "+0.050" and Change(0.05).sign is None
    assert Change(None).text() == "undefined" and Change(None).sign is None


def test_scores_of_different_pairs_are_refused() -> None:
    labels, base, new, groups = _data()
    with pytest.raises(DataError, match=r"^y_true has 400 values and y_score 399; "):
        paired_changes(labels, base, new[:-1], groups, group_names=NAMES)


def test_bad_settings_are_refused_like_the_audits() -> None:
    labels, base, new, groups = _data()
    with pytest.raises(ConfigError, match=r"^ci_level=1\.5: expected a number between 0 and 1$"):
        paired_changes(labels, base, new, groups, group_names=NAMES, ci_level=1.5)
    with pytest.raises(ConfigError, match=r"^threshold=nan: expected a finite number$"):
        paired_changes(labels, base, new, groups, group_names=NAMES, new_threshold=float("nan"))
