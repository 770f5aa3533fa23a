"""Distances between two 1-D samples: the debiased Sinkhorn divergence and exact ``W2^2``."""

from __future__ import annotations

import torch

from fairvlm.errors import ConfigError
from fairvlm.ot._arrays import (
    ArrayLike,
    as_sample,
    check_count,
    check_positive,
    host_sample,
    input_device,
    output_dtype,
    to_caller,
)
from fairvlm.ot._autograd import with_jacobians
from fairvlm.ot._quantiles import squared_w2_rows
from fairvlm.ot._sinkhorn import Clouds, SolverSettings, debiased_sinkhorn


def solver_settings(blur: float, scaling: float, tol: float, max_iter: int) -> SolverSettings:
    """Checked :class:`SolverSettings` (a :class:`ConfigError` names the bad option)."""
    if not 0 < scaling < 1:
        raise ConfigError(f"scaling: expected a number strictly between 0 and 1, got {scaling}")
    return SolverSettings(blur=check_positive(blur, "blur"), scaling=float(scaling),
                          tol=check_positive(tol, "tol"),
                          max_iter=check_count(max_iter, "max_iter"))


def sinkhorn_divergence(x: ArrayLike, y: ArrayLike, *, blur: float = 0.1, scaling: float = 0.7,
                        tol: float = 1e-7, max_iter: int = 100) -> torch.Tensor | float:
    r"""Debiased Sinkhorn divergence between two 1-D samples with uniform weights.

    .. math::
        S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta)
        - \tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha)
        - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta),\quad
        \mathrm{OT}_\varepsilon(\alpha, \beta) = \min_\pi \langle \pi, C \rangle
        + \varepsilon\, \mathrm{KL}(\pi \,|\, \alpha \otimes \beta),

    with :math:`C(x, y) = |x - y|^2 / 2` and :math:`\varepsilon = \mathrm{blur}^2`: what geomloss
    ``SamplesLoss("sinkhorn", p=2, blur=blur)`` computes, here solved to convergence. It tends
    to ``W2^2 / 2`` as ``blur -> 0``; it is symmetric, >= 0, and 0 only for equal samples.

    Parameters
    ----------
    x, y
        1-D samples (numpy arrays or torch tensors, any sizes).
    blur
        Entropic blur, in the units of the values.
    scaling
        Blur ratio between two annealing levels.
    tol
        The solver stops when the dual objective can gain less than ``tol * blur**2``.
    max_iter
        Most updates at the target temperature (a ``RuntimeWarning`` says when reached).

    Returns
    -------
    torch.Tensor or float
        A 0-d tensor (differentiable with respect to both samples) when an input is a torch
        tensor, else a float.
    """
    settings = solver_settings(blur, scaling, tol, max_iter)
    device = input_device(x, y)
    first, second = (as_sample(values, name, device=device, check_finite=False)
                     for values, name in ((x, "x"), (y, "y")))
    on_host = host_sample(first, "x"), host_sample(second, "y")
    if first.numel() > second.numel():  # S is symmetric; the Newton system lives on the sources
        first, second, on_host = second, first, on_host[::-1]
    wanted = torch.is_grad_enabled() and (first.requires_grad or second.requires_grad)
    solved = debiased_sinkhorn(Clouds.from_matrix(on_host[0][None]),
                               Clouds.from_matrix(on_host[1][None]), settings, gradients=wanted)
    jacobians = ([(first, solved.source_grad), (second, solved.target_grad)] if wanted else [])
    value = with_jacobians(solved.value, jacobians, device=first.device)[0]
    return to_caller(value, output_dtype(x, y))


def wasserstein2_1d(x: ArrayLike, y: ArrayLike) -> torch.Tensor | float:
    r"""Exact squared 2-Wasserstein distance between two 1-D samples with uniform weights.

    .. math::
        W_2^2(\alpha, \beta) = \int_0^1 |F_\alpha^{-1}(t) - F_\beta^{-1}(t)|^2\, dt,

    computed from the sorted samples (sizes may differ). Equals POT's
    ``ot.wasserstein_1d(x, y, p=2)``. Differentiable when an input is a torch tensor.
    """
    device = input_device(x, y)
    first, second = as_sample(x, "x", device=device), as_sample(y, "y", device=device)
    return to_caller(squared_w2_rows(first[None], second)[0], output_dtype(x, y))

