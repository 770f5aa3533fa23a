"""Permutation null: exact p-value formula, uniform under the null, small for a shifted group."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch
from scipy import stats

from fairvlm import ot
from fairvlm.errors import ConfigError, DataError
from fairvlm.ot import _permutation
from fairvlm.ot._permutation import _quantile_integrals, _sorted_group_squared_w2


def _null_p_values(statistic: str, n_datasets: int, n_permutations: int) -> np.ndarray:
    """p-values of group 0 on data sets where the labels are independent of the values."""
    rng = np.random.default_rng(11)
    p_values = []
    for seed in range(n_datasets):
        values = rng.gamma(2.0, 0.5, size=40)
        groups = rng.choice(3, p=[0.3, 0.4, 0.3], size=40)
        _, p = ot.permutation_null(values, groups, 0, statistic=statistic,
                                   n_permutations=n_permutations, seed=seed, blur=0.2)
        p_values.append(p)
    return np.array(p_values)


@pytest.mark.parametrize(("statistic", "n_datasets"), [("wasserstein", 300), ("sinkhorn", 40)])
def test_p_values_are_uniform_under_the_null(statistic, n_datasets):
    p_values = _null_p_values(statistic, n_datasets, n_permutations=49)
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    assert 0.4 < p_values.mean() < 0.6


@pytest.mark.parametrize("statistic", ot.STATISTICS)
def test_shifted_group_gets_the_smallest_possible_p_value(statistic):
    rng = np.random.default_rng(2)
    groups = np.repeat([0, 1], [12, 36])
    values = rng.normal(size=48) + 1.5 * (groups == 0)
    observed, p = ot.permutation_null(torch.tensor(values), groups, 0, statistic=statistic,
                                      n_permutations=99, blur=0.2)
    assert p == pytest.approx(1 / 100)
    expected = (ot.sinkhorn_divergence(values[:12], values, blur=0.2) if statistic == "sinkhorn"
                else ot.wasserstein2_1d(values[:12], values) / 2)
    assert observed == pytest.approx(expected, rel=1e-7)


def test_whole_population_as_group_has_p_value_one():
    values = np.random.default_rng(3).normal(size=20)
    observed, p = ot.permutation_null(values, np.zeros(20, dtype=int), 0, n_permutations=19)
    assert abs(observed) < 1e-9 and p == 1.0


def test_sorted_shuffle_null_matches_a_per_shuffle_reference():
    """The sort-free W2 of shuffled labels over the sorted population equals POT's W2^2 of
    the same shuffled groups, one shuffle at a time (ties in the values included)."""
    rng = np.random.default_rng(5)
    values = np.round(rng.gamma(2.0, 0.5, size=45), 1)  # rounding makes ties
    sorted_values = np.sort(values)
    labels = np.repeat([0, 1, -1], [11, 30, 4])
    shuffled = rng.permuted(np.tile(labels, (25, 1)), axis=1)
    for group, size in ((0, 11), (1, 30)):
        fast = _sorted_group_squared_w2(sorted_values, shuffled, group,
                                        _quantile_integrals(sorted_values, size))
        naive = [pot.wasserstein_1d(rng.permutation(sorted_values[row == group]), values, p=2)
                 for row in shuffled]
        np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-14)


def _shifted_groups(n_values: int) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Values, group codes (``-1`` = none) and member positions of three groups."""
    rng = np.random.default_rng(8)
    groups = rng.choice([0, 1, 2, -1], p=[0.2, 0.3, 0.4, 0.1], size=n_values)
    values = rng.gamma(2.0, 0.5, size=n_values) + 0.3 * (groups == 0)
    return values, groups, [np.flatnonzero(groups == g) for g in range(3)]


def test_wasserstein_shuffles_drawn_in_blocks_are_the_one_shot_shuffles(monkeypatch):
    values, groups, members = _shifted_groups(50)
    whole = ot.group_permutation_null(values, groups, 3, statistic="wasserstein",
                                      n_permutations=45, seed=3)
    monkeypatch.setattr(_permutation, "_SHUFFLE_ENTRIES", 8 * 50)  # 8 rows: 6 blocks
    blocked = _permutation._wasserstein_nulls(torch.tensor(values), members, 45, 3)
    order = np.argsort(values, kind="stable")
    labels = np.select([groups == g for g in range(3)], range(3), -1)[order]
    one_shot = np.random.default_rng(3).permuted(np.tile(labels, (45, 1)), axis=1)
    for k in range(3):
        reference = [pot.wasserstein_1d(values[order][row == k], values, p=2) / 2
                     for row in one_shot]
        np.testing.assert_allclose(blocked[k], reference, rtol=1e-10, atol=1e-14)
    again = ot.group_permutation_null(values, groups, 3, statistic="wasserstein",
                                      n_permutations=45, seed=3)
    np.testing.assert_array_equal(again.observed, whole.observed)
    np.testing.assert_array_equal(again.p_values, whole.p_values)
    assert len(set(whole.p_values)) == 3


def test_sinkhorn_shuffles_drawn_per_solve_are_the_one_shot_shuffles(monkeypatch):
    values, groups, members = _shifted_groups(40)
    whole = ot.group_permutation_null(values, groups, 3, n_permutations=19, seed=5, blur=0.3)
    chunk = 3 * 40 * max(len(m) for m in members)  # 3 or more shuffles per solve, 7 at most
    monkeypatch.setattr(_permutation, "_CHUNK_ENTRIES", chunk)
    sample = torch.tensor(values)
    distance, _ = _permutation._distance("sinkhorn", sample, 0.3)
    blocked = _permutation._shuffled_nulls(distance, 40, members, 19, 5)
    one_shot = np.random.default_rng(5).permuted(np.tile(np.arange(40), (19, 1)), axis=1)
    offsets = np.cumsum([0, *(len(m) for m in members)])
    for k in range(3):
        rows = chunk // (len(members[k]) * 40)
        assert 3 <= rows < 19
        index = one_shot[:, offsets[k]:offsets[k + 1]]
        reference = np.concatenate([distance(index[start:start + rows]).numpy()
                                    for start in range(0, 19, rows)])
        np.testing.assert_array_equal(blocked[k], reference)
    again = ot.group_permutation_null(values, groups, 3, n_permutations=19, seed=5, blur=0.3)
    np.testing.assert_array_equal(again.observed, whole.observed)
    np.testing.assert_array_equal(again.p_values, whole.p_values)


def test_wasserstein_p_value_counts_shuffles_at_least_as_far_as_observed():
    rng = np.random.default_rng(6)
    groups = np.repeat([0, 1], [15, 45])
    values = rng.normal(size=60) + 0.4 * (groups == 0)
    observed, p = ot.permutation_null(values, groups, 0, statistic="wasserstein",
                                      n_permutations=999, seed=1)
    null = [pot.wasserstein_1d(values[rng.permutation(60)[:15]], values, p=2) / 2
            for _ in range(2000)]
    reference = (1 + np.count_nonzero(np.array(null) >= observed)) / (1 + len(null))
    assert 0.0 < reference < 0.5 and abs(p - reference) < 0.04


def test_all_groups_at_once_match_the_group_distances():
    rng = np.random.default_rng(4)
    groups = rng.choice([0, 1, 2, -1], p=[0.4, 0.4, 0.1, 0.1], size=60)
    values = rng.normal(size=60) + 2.0 * (groups == 1)
    test = ot.group_permutation_null(values, groups, 4, n_permutations=49, blur=0.3,
                                     min_count=3)
    divergences, counts = ot.group_sinkhorn_divergences(values, groups, 4, blur=0.3,
                                                        min_count=3)
    np.testing.assert_allclose(test.observed, divergences, rtol=1e-7)
    np.testing.assert_array_equal(test.counts, counts)
    assert test.p_values[1] == pytest.approx(1 / 50)
    assert np.isnan(test.p_values[3])
    assert set(np.round(test.p_values[:3] * 50, 9)) <= set(range(1, 51))


@pytest.mark.parametrize(("arguments", "error", "field"), [
    ({"statistic": "energy"}, ConfigError, "statistic"),
    ({"group": 5}, DataError, "group_index"),
    ({"n_permutations": 0}, ConfigError, "n_permutations"),
])
def test_bad_input_is_one_line_naming_the_field(arguments, error, field):
    call = {"group": 0, **arguments}
    with pytest.raises(error, match=f"^{field}: "):
        ot.permutation_null(np.arange(6.0), np.array([0, 0, 1, 1, 0, -1]), call.pop("group"),
                            **call)
