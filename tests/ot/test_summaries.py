"""Summarised Sinkhorn divergences (fairvlm.ot._summaries) against the exact solver and POT."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest

from fairvlm import ot
from fairvlm.errors import ConfigError
from fairvlm.ot._summaries import (
    MAX_ATOMS,
    VARIANCE_ERROR_BOUND,
    summarise,
    summarised_group_sinkhorn_divergences,
)


def _losses(rng: np.random.Generator, sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Gamma-tailed per-pair losses; group 1 shifted, group 2 with a longer tail."""
    codes = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    values = (rng.gamma(2.0, 0.6, codes.size) + 0.5 * (codes == 1)
              + rng.exponential(0.3, codes.size) * (codes == 2))
    return values, codes


def _probabilities(rng: np.random.Generator,
                   sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot-like p(glaucoma) in [0, 1], piled up near both ends; group 1 shifted."""
    codes = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    logits = rng.normal(np.where(rng.random(codes.size) < 0.5, 2.0, -2.0), 1.5) + (codes == 1)
    return 1.0 / (1.0 + np.exp(-logits)), codes


def test_a_sample_within_max_atoms_is_its_own_summary() -> None:
    values = np.random.default_rng(0).normal(size=40)
    summary = summarise(values, 0.1, max_atoms=40)
    np.testing.assert_array_equal(summary.points, np.sort(values))
    np.testing.assert_array_equal(summary.weights, np.full(40, 1 / 40))
    assert summary.moved == 0.0


def test_a_summary_keeps_mass_and_mean_and_moves_the_sample_by_its_w2() -> None:
    values = np.random.default_rng(1).gamma(2.0, 0.6, 5000)
    summary = summarise(values, 0.1 * values.std())
    assert MAX_ATOMS // 2 < summary.points.size <= MAX_ATOMS + 60
    assert np.all(np.diff(summary.points) > 0)
    assert summary.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert summary.points @ summary.weights == pytest.approx(values.mean(), rel=1e-12)
    expected = pot.wasserstein_1d(values, summary.points, np.full(values.size, 1 / values.size),
                                  summary.weights, p=2)
    assert summary.moved == pytest.approx(expected, rel=1e-9)
    assert 0 < summary.moved < 1e-3 * values.var()


def test_equal_values_share_an_atom_and_extreme_and_isolated_values_stand_alone() -> None:
    rng = np.random.default_rng(2)
    constant = summarise(np.full(1000, 0.7), 0.1)
    np.testing.assert_allclose(constant.points, [0.7], rtol=1e-15)
    np.testing.assert_array_equal(constant.weights, [1.0])
    two = summarise(np.repeat([0.2, 0.9], [600, 400]), 0.1)
    np.testing.assert_allclose(two.points, [0.2, 0.9], rtol=1e-15)
    np.testing.assert_allclose(two.weights, [0.6, 0.4], rtol=1e-15)
    values = np.r_[rng.normal(size=3000), 9.0]
    summary = summarise(values, 0.05)
    ordered = np.sort(values)
    for edge in (slice(0, 8), slice(-8, None)):  # the 8 smallest and largest values, alone
        np.testing.assert_array_equal(summary.points[edge], ordered[edge])
        np.testing.assert_array_equal(summary.weights[edge], np.full(8, 1 / values.size))


def test_with_every_sample_within_max_atoms_it_is_the_exact_solve() -> None:
    values, codes = _losses(np.random.default_rng(3), (60, 30, 10))
    exact, counts = ot.group_sinkhorn_divergences(values, codes, 3, blur=0.1)
    result = summarised_group_sinkhorn_divergences(values, codes, 3, blur=0.1, max_atoms=100)
    np.testing.assert_allclose(result.divergences, exact, rtol=1e-12)
    np.testing.assert_array_equal(result.counts, counts)
    np.testing.assert_array_equal(result.moved, np.zeros(3))
    assert result.population_moved == 0.0


@pytest.mark.parametrize("statistic", [_losses, _probabilities])
@pytest.mark.parametrize("relative_blur", [0.1, 0.05])
def test_summarised_divergences_are_within_the_measured_error_of_the_exact_solve(
        statistic, relative_blur: float) -> None:
    values, codes = statistic(np.random.default_rng(4), (450, 300, 180, 40, 30))
    blur = relative_blur * values.std()
    exact, _ = ot.group_sinkhorn_divergences(values, codes, 5, blur=blur)
    result = summarised_group_sinkhorn_divergences(values, codes, 5, blur=blur)
    assert result.population_moved > 0 and np.all(result.moved[:2] > 0)  # really summarised
    error = np.abs(result.divergences - exact)
    assert np.all(error <= VARIANCE_ERROR_BOUND * values.var())
    assert np.all(error <= 1e-3 * exact)
    assert np.all(error <= 0.6 * (result.moved + result.population_moved) + 1e-12)


def test_a_far_outlier_beyond_a_group_costs_no_accuracy() -> None:
    """The population's outlier is carried by the group's largest values, so merging those is
    what the divergence is most sensitive to: they stay atoms of their own."""
    rng = np.random.default_rng(5)
    values, codes = np.r_[rng.random(1199), 3.0], np.repeat([0, 1], [600, 600])
    blur = 0.1 * values.std()
    exact, _ = ot.group_sinkhorn_divergences(values, codes, 2, blur=blur)
    result = summarised_group_sinkhorn_divergences(values, codes, 2, blur=blur, max_atoms=64)
    np.testing.assert_allclose(result.divergences, exact, rtol=1e-3)


def test_groups_below_min_count_are_nan_and_bad_options_are_refused() -> None:
    values, codes = _losses(np.random.default_rng(6), (300, 5))
    result = summarised_group_sinkhorn_divergences(values, codes, 3, min_count=10)
    assert np.isfinite(result.divergences[0]) and np.isnan(result.divergences[1:]).all()
    np.testing.assert_array_equal(result.counts, [300, 5, 0])
    with pytest.raises(ConfigError, match="max_atoms: expected a whole number >= 1, got 0"):
        summarised_group_sinkhorn_divergences(values, codes, 2, max_atoms=0)
    with pytest.raises(ConfigError, match="blur: expected a positive number, got -1"):
        summarised_group_sinkhorn_divergences(values, codes, 2, blur=-1)
