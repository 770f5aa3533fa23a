"""All groups of an attribute in one call: same numbers as one call a group, NaN under min_count."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

from fairvlm import ot
from fairvlm.errors import ConfigError, DataError


def _batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """32 per-pair losses, 3 groups of unequal sizes (one shifted), some pairs in no group."""
    rng = np.random.default_rng(seed)
    groups = rng.choice([0, 1, 2, -1], p=[0.5, 0.3, 0.15, 0.05], size=32)
    losses = rng.gamma(2.0, 0.6, size=32) + 0.8 * (groups == 2)
    return losses, groups


def test_batched_groups_equal_one_call_a_group():
    losses, groups = _batch()
    divergences, counts = ot.group_sinkhorn_divergences(losses, groups, 3, blur=0.1)
    for g in range(3):
        expected = ot.sinkhorn_divergence(losses[groups == g], losses, blur=0.1)
        assert divergences[g] == pytest.approx(expected, rel=1e-7)
    assert counts.tolist() == [int(np.sum(groups == g)) for g in range(3)]


def test_reference_sample_replaces_the_population():
    losses, groups = _batch(1)
    reference = np.random.default_rng(2).gamma(2.0, 0.6, size=50)
    divergences, _ = ot.group_sinkhorn_divergences(losses, groups, 3, blur=0.2,
                                                   reference=reference)
    distances, _ = ot.group_wasserstein_distances(losses, groups, 3, reference=reference)
    for g in range(3):
        assert divergences[g] == pytest.approx(
            ot.sinkhorn_divergence(losses[groups == g], reference, blur=0.2), rel=1e-7)
        assert distances[g] == pytest.approx(
            pot.wasserstein_1d(losses[groups == g], reference, p=2) / 2, rel=1e-12)


def test_groups_under_min_count_are_nan_and_counted():
    losses = np.arange(10.0)
    groups = np.array([0, 0, 0, 0, 1, 1, 0, 0, -1, 0])
    for function in (ot.group_sinkhorn_divergences, ot.group_wasserstein_distances):
        distances, counts = function(losses, groups, 3, min_count=3)
        assert counts.tolist() == [7, 2, 0]
        assert np.isfinite(distances[0]) and np.isnan(distances[1]) and np.isnan(distances[2])


def test_torch_in_gives_differentiable_torch_out_without_nan_gradients():
    losses, groups = _batch(3)
    values = torch.tensor(losses, dtype=torch.float32, requires_grad=True)
    divergences, counts = ot.group_sinkhorn_divergences(values, torch.tensor(groups), 4,
                                                        min_count=2)
    assert divergences.dtype == torch.float32 and torch.isnan(divergences[3])
    assert isinstance(counts, np.ndarray) and counts[3] == 0
    divergences[~torch.isnan(divergences)].sum().backward()
    assert torch.isfinite(values.grad).all() and values.grad.abs().sum() > 0
    from_numpy, _ = ot.group_sinkhorn_divergences(losses, groups, 4, min_count=2)
    np.testing.assert_allclose(divergences.detach().numpy(), from_numpy, rtol=1e-5)


def test_group_wasserstein_matches_pot_and_is_differentiable():
    losses, groups = _batch(4)
    values = torch.tensor(losses, requires_grad=True)
    distances, _ = ot.group_wasserstein_distances(values, torch.tensor(groups), 3)
    for g in range(3):
        expected = pot.wasserstein_1d(losses[groups == g], losses, p=2) / 2
        assert float(distances[g].detach()) == pytest.approx(expected, rel=1e-12)
    distances.sum().backward()
    assert torch.isfinite(values.grad).all()


def test_sinkhorn_approaches_the_wasserstein_distances_at_small_blur():
    losses, groups = _batch(5)
    divergences, _ = ot.group_sinkhorn_divergences(losses, groups, 3, blur=0.005)
    distances, _ = ot.group_wasserstein_distances(losses, groups, 3)
    np.testing.assert_allclose(divergences, distances, rtol=2e-2)


@pytest.mark.parametrize(("arguments", "error", "field"), [
    ({"group_index": np.zeros(3, dtype=int)}, DataError, "group_index"),
    ({"group_index": np.array([0, 1, 5, 0])}, DataError, "group_index"),
    ({"group_index": np.array([0.0, 1.0, 1.0, 0.0])}, DataError, "group_index"),
    ({"n_groups": 0}, ConfigError, "n_groups"),
    ({"min_count": 0}, ConfigError, "min_count"),
    ({"reference": [1.0, np.inf]}, DataError, "reference"),
])
def test_bad_input_is_one_line_naming_the_field(arguments, error, field):
    call = {"values": np.array([0.1, 0.5, 0.9, 1.3]), "group_index": np.array([0, 1, 1, 0]),
            "n_groups": 2, **arguments}
    for function in (ot.group_sinkhorn_divergences, ot.group_wasserstein_distances):
        with pytest.raises(error, match=f"^{field}: "):
            function(call["values"], call["group_index"], call["n_groups"],
                     **{k: v for k, v in call.items()
                        if k not in ("values", "group_index", "n_groups")})
