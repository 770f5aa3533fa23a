"""Exact 1-D W2 against POT's ot.wasserstein_1d and a hand computation."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch

from fairvlm import ot


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 7), (5, 5), (12, 7), (100, 37), (1000, 999)])
def test_matches_pot_wasserstein_1d(n, m):
    rng = np.random.default_rng(n * m)
    x, y = rng.normal(size=n), rng.exponential(size=m)
    assert ot.wasserstein2_1d(x, y) == pytest.approx(pot.wasserstein_1d(x, y, p=2), rel=1e-12)


def test_hand_computed_unequal_sizes():
    """Quantiles of [0, 1, 2] vs [0, 2]: pieces (1/3, 1/2] and (1/2, 2/3] each cost 1^2."""
    assert ot.wasserstein2_1d([2.0, 0.0, 1.0], [0.0, 2.0]) == pytest.approx(1 / 3, rel=1e-15)
    assert ot.wasserstein2_1d([0.0, 1.0], [0.5]) == pytest.approx(0.25, rel=1e-15)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=7), requires_grad=True)
    y = torch.tensor(rng.normal(size=4), requires_grad=True)
    assert torch.autograd.gradcheck(ot.wasserstein2_1d, (x, y))


def test_torch_in_torch_out_numpy_in_float_out():
    x, y = np.array([0.0, 3.0, 1.0]), np.array([2.0, 2.5])
    assert isinstance(ot.wasserstein2_1d(x, y), float)
    value = ot.wasserstein2_1d(torch.tensor(x, dtype=torch.float32), y)
    assert value.dtype == torch.float32
    assert float(value) == pytest.approx(pot.wasserstein_1d(x, y, p=2), rel=1e-6)
