"""Permutation null: exact p-value formula, uniform under the null, small for a shifted group."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from fairvlm import ot
from fairvlm.errors import ConfigError, DataError


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
