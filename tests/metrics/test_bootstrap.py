"""The vectorised bootstrap against a plain loop, its determinism, and its coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fairvlm.metrics import audit_attribute
from fairvlm.metrics._bootstrap import draw_resample_indices

NAMES = {0: "a", 1: "b", 2: "c"}
LEVEL = 0.9


def _data(seed: int, n: int, shift=(0.8, 0.8, 0.8)):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 3, n)
    y = rng.integers(0, 2, n)
    scores = rng.normal(size=n) + y * np.asarray(shift)[codes]
    return y, scores, codes


def _auc_or_nan(y, scores) -> float:
    return roc_auc_score(y, scores) if 0 < y.sum() < y.size else math.nan


def _naive_statistics(y, scores, codes, threshold):
    """Overall AUC, group AUCs and selection rates of one resample, by plain loops."""
    overall = _auc_or_nan(y, scores)
    groups = np.array([_auc_or_nan(y[codes == c], scores[codes == c]) for c in NAMES])
    selection = np.array([np.mean(scores[codes == c] >= threshold) for c in NAMES])
    return overall, groups, selection


def _percentile(values) -> tuple[float, float]:
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    tail = (1 - LEVEL) / 2
    return tuple(np.quantile(values, [tail, 1 - tail]))


def _gap_interval(gap, resampled, point) -> tuple[float, float]:
    noise = np.nanmax(resampled - point, axis=1) - np.nanmin(resampled - point, axis=1)
    noise = noise[np.isfinite(resampled).all(axis=1)]
    margin = np.quantile(noise, LEVEL)
    return max(0.0, gap - margin), gap + margin


def test_vectorised_bootstrap_equals_a_naive_loop() -> None:
    y, scores, codes = _data(4, 90)
    threshold, n_boot, seed = 0.3, 60, 17
    report = audit_attribute(y, scores, codes, group_names=NAMES, min_n=1,
                             n_bootstrap=n_boot, seed=seed, ci_level=LEVEL,
                             threshold=threshold)
    point = _naive_statistics(y, scores, codes, threshold)
    resamples = [_naive_statistics(y[i], scores[i], codes[i], threshold)
                 for i in draw_resample_indices(y.size, n_boot, seed)]
    overall = np.array([r[0] for r in resamples])
    groups = np.array([r[1] for r in resamples])
    selection = np.array([r[2] for r in resamples])

    assert (report.auc.ci_low, report.auc.ci_high) == pytest.approx(_percentile(overall))
    for code, name in NAMES.items():
        ci = report.group(name).auc
        assert (ci.ci_low, ci.ci_high) == pytest.approx(_percentile(groups[:, code]))
    es_auc = overall / (1 + np.abs(groups - overall[:, None]).sum(axis=1))
    assert (report.es_auc.ci_low, report.es_auc.ci_high) == pytest.approx(_percentile(es_auc))
    assert (report.worst_group_auc.ci_low, report.worst_group_auc.ci_high) == pytest.approx(
        _percentile(groups.min(axis=1)))
    gap = report.auc_gap.value
    assert (report.auc_gap.ci_low, report.auc_gap.ci_high) == pytest.approx(
        _gap_interval(gap, groups, point[1]))
    dpd = report.dpd.value
    assert dpd == pytest.approx(point[2].max() - point[2].min())
    assert (report.dpd.ci_low, report.dpd.ci_high) == pytest.approx(
        _gap_interval(dpd, selection, point[2]))


def test_same_seed_same_report_other_seed_other_intervals() -> None:
    y, scores, codes = _data(1, 400)

    def run(seed):
        return audit_attribute(y, scores, codes, group_names=NAMES, n_bootstrap=200,
                               seed=seed).to_dict()

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first["auc"]["value"] == other["auc"]["value"]
    assert first["auc"]["ci_low"] != other["auc"]["ci_low"]


def test_no_bootstrap_gives_values_without_intervals() -> None:
    y, scores, codes = _data(2, 300)
    report = audit_attribute(y, scores, codes, group_names=NAMES, n_bootstrap=0)
    assert report.auc.value is not None
    assert report.auc.ci_low is None and report.auc_gap.ci_high is None


def test_undefined_resamples_are_counted_in_a_note() -> None:
    y, scores, codes = _data(6, 300)
    y[np.flatnonzero((codes == 2) & (y == 1))[2:]] = 0  # c keeps two positives; resamples
    # that draw neither leave its AUC undefined
    report = audit_attribute(y, scores, codes, group_names=NAMES, min_n=1, n_bootstrap=300)
    note = report.group("c").auc.note
    assert note.startswith("CI leaves out") and "single class" in note


def test_an_interval_without_spread_says_it_understates_the_uncertainty() -> None:
    y, scores, codes = _data(7, 300)
    in_c = codes == 2
    scores = scores.astype(float).copy()
    scores[in_c] = y[in_c] + 0.1 * np.arange(in_c.sum()) / in_c.sum()  # c: perfectly separated
    report = audit_attribute(y, scores, codes, group_names=NAMES, min_n=1, n_bootstrap=200)
    c = report.group("c").auc
    assert (c.value, c.ci_low, c.ci_high) == (1.0, 1.0, 1.0)
    assert c.note == ("every resample gave 1.000: an interval without spread understates the "
                      "uncertainty (e.g. a small group whose scores separate perfectly)")
    assert "every resample" not in report.group("a").auc.note  # an interval with spread


def test_overall_auc_interval_covers_the_true_auc() -> None:
    """Binormal scores with unit variances: the true AUC is Phi(d / sqrt 2)."""
    d = 1.0
    true_auc = 0.5 * (1 + math.erf(d / 2))
    covered = 0
    replicates = 80
    for seed in range(replicates):
        y, scores, codes = _data(1000 + seed, 300, shift=(d, d, d))
        report = audit_attribute(y, scores, codes, group_names=NAMES, n_bootstrap=300,
                                 seed=seed, ci_level=0.95)
        covered += report.auc.ci_low <= true_auc <= report.auc.ci_high
    assert covered / replicates >= 0.85


def test_gap_interval_rarely_excludes_zero_without_a_gap_and_finds_a_real_one() -> None:
    """Expected false-alarm rate at most 5%; the bound leaves room for 60 replicates' noise."""
    replicates = 60
    false_alarms = found = 0
    for seed in range(replicates):
        y, scores, codes = _data(2000 + seed, 450)
        null = audit_attribute(y, scores, codes, group_names=NAMES, n_bootstrap=200,
                               seed=seed, ci_level=0.95)
        false_alarms += null.auc_gap.ci_low > 0
        y, scores, codes = _data(3000 + seed, 450, shift=(0.3, 0.8, 1.8))
        real = audit_attribute(y, scores, codes, group_names=NAMES, n_bootstrap=200,
                               seed=seed, ci_level=0.95)
        found += real.auc_gap.ci_low > 0
    assert false_alarms / replicates <= 0.13
    assert found / replicates >= 0.9


def test_resample_blocks_bound_memory_and_stack_to_the_full_draw() -> None:
    from fairvlm.metrics._bootstrap import _MAX_CHUNK_ELEMENTS, resample_index_blocks

    n_items = _MAX_CHUNK_ELEMENTS // 7 + 3  # blocks of 6 rows, the last one shorter
    blocks = list(resample_index_blocks(n_items, 20, seed=4))
    assert [b.shape[0] for b in blocks] == [6, 6, 6, 2]
    assert all(b.size <= _MAX_CHUNK_ELEMENTS for b in blocks)
    stacked = np.concatenate(blocks)
    assert np.array_equal(stacked, draw_resample_indices(n_items, 20, seed=4))
    assert stacked.min() >= 0 and stacked.max() < n_items
