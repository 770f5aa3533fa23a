"""Helpers for the fairvlm.ot tests: single-threaded runs and a converged POT reference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import ot as pot
import pytest
import torch
from threadpoolctl import threadpool_limits

# Stop POT at a marginal error of 1e-12 or after this many iterations at the target eps; the
# reference is only trusted if POT's own marginal error is below _TRUSTED_MARGINAL_ERROR (at
# small blur a few slow modes stall the marginals near 1e-6 while the value has converged to
# about 1e-10 relative: checked against 20,000 iterations).
_REFERENCE_ITERATIONS = 5000
_TRUSTED_MARGINAL_ERROR = 1e-5


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """These solves are small: on a shared 2-core machine, waking threads costs more than it
    saves."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(previous)


def pot_entropic_ot(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """``<P, C> + eps KL(P | a x b)`` for POT's ``sinkhorn_log`` plan ``P`` (uniform weights,
    ``C = |x - y|^2 / 2``), converged: warm-started from coarser ``eps`` (POT's own
    ``warmstart``), then run at ``eps`` to ``stopThr=1e-12``."""
    cost = 0.5 * (x[:, None] - y[None, :]) ** 2
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    reg, warmstart = max(eps, min(float(cost.max()), 64 * eps)), None
    while True:
        final = reg == eps
        with np.errstate(over="ignore"):  # POT's marginal check may overflow on a warm start
            plan, log = pot.bregman.sinkhorn_log(
                a, b, cost, reg, numItermax=_REFERENCE_ITERATIONS if final else 100,
                stopThr=1e-12, warmstart=warmstart, log=True, warn=False)
        if final:
            break
        warmstart, reg = (log["log_u"], log["log_v"]), max(reg / 4, eps)
    assert log["err"][-1] < _TRUSTED_MARGINAL_ERROR, "the POT reference did not converge"
    inside = plan > 0
    kl = np.sum(plan[inside] * np.log(plan[inside] / np.outer(a, b)[inside]))
    return float(np.sum(plan * cost) + eps * kl)


def pot_sinkhorn_divergence(x: np.ndarray, y: np.ndarray, blur: float) -> float:
    """``OT(x, y) - OT(x, x)/2 - OT(y, y)/2`` from :func:`pot_entropic_ot` at ``eps = blur**2``."""
    eps = blur**2
    return (pot_entropic_ot(x, y, eps) - 0.5 * pot_entropic_ot(x, x, eps)
            - 0.5 * pot_entropic_ot(y, y, eps))


@pytest.fixture
def pot_divergence() -> Callable[[np.ndarray, np.ndarray, float], float]:
    """The converged POT reference of the debiased Sinkhorn divergence."""
    return pot_sinkhorn_divergence
