r"""Debiased Sinkhorn divergences of batches of 1-D measures, differentiable in torch.

Convention (geomloss ``SamplesLoss("sinkhorn", p=2, blur=blur)``): cost
:math:`C(x, y) = |x - y|^2 / 2`, :math:`\varepsilon = \mathrm{blur}^2`,

.. math::
    \mathrm{OT}_\varepsilon(\alpha, \beta)
    = \min_{\pi \in \Pi(\alpha, \beta)} \langle \pi, C \rangle
      + \varepsilon\, \mathrm{KL}(\pi \,|\, \alpha \otimes \beta)
    = \max_{f, g}\ \langle \alpha, f \rangle + \langle \beta, g \rangle
      - \varepsilon \langle \alpha \otimes \beta, e^{(f \oplus g - C)/\varepsilon} - 1 \rangle,

which equals :math:`\langle \alpha, f \rangle + \langle \beta, g \rangle` at the optimal
potentials (found without autograd by :mod:`fairvlm.ot._potentials`). The value is computed
with one differentiable soft c-transform from the detached potentials (envelope theorem, as in
geomloss): :math:`\langle \alpha, T_\beta(g)(x; \bar y) \rangle + \langle \beta,
T_\alpha(f)(y; \bar x) \rangle`, a bar meaning detached, so that the gradient with respect to
:math:`x_i` is :math:`\sum_j \pi_{ij} (x_i - y_j)` and with respect to :math:`y_j` is
:math:`\sum_i \pi_{ij} (y_j - x_i)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fairvlm.ot._potentials import cross_potentials, epsilon_schedule, symmetric_potential

_PADDING_SLACK = 1.5
_ALWAYS_BATCHED = 256


@dataclass(frozen=True)
class Clouds:
    """A batch of ``K`` uniform 1-D empirical measures padded to a common length ``L``.

    Attributes
    ----------
    points
        ``(K, L)`` float64 tensor; row ``k`` holds its ``n_k`` points first, then padding.
    log_weights
        ``(K, L)``: ``-log(n_k)`` on the points of row ``k``, ``-inf`` on its padding.
    """

    points: Tensor
    log_weights: Tensor

    @classmethod
    def from_matrix(cls, points: Tensor) -> Clouds:
        """Each row of ``points`` (``K, n``) is one measure; no padding."""
        return cls(points, torch.full_like(points, -math.log(points.shape[1])))

    @classmethod
    def from_indices(cls, sample: Tensor, index: np.ndarray, counts: np.ndarray) -> Clouds:
        """Row ``k`` is ``sample[index[k, :counts[k]]]`` (differentiable); the rest of
        ``index[k]`` is padding and may hold any valid position."""
        points = sample[torch.as_tensor(index, device=sample.device)]
        inside = np.arange(index.shape[1])[None, :] < counts[:, None]
        log_weights = np.where(inside, -np.log(counts)[:, None], -np.inf)
        return cls(points, torch.as_tensor(log_weights, device=sample.device))

    @property
    def weights(self) -> Tensor:
        """``(K, L)`` point masses, 0 on padding."""
        return self.log_weights.exp()

    def counts(self) -> np.ndarray:
        """Number of points of each row."""
        return torch.isfinite(self.log_weights).sum(1).cpu().numpy()

    def take(self, rows: np.ndarray) -> Clouds:
        """The measures ``rows``, with the padding none of them needs dropped."""
        width = int(self.counts()[rows].max())
        index = torch.as_tensor(rows, device=self.points.device)
        return Clouds(self.points[index, :width], self.log_weights[index, :width])

    def numpy(self) -> tuple[np.ndarray, np.ndarray]:
        """Detached float64 numpy ``(points, log_weights)`` for the solver (which does not
        write to them)."""
        return (np.asarray(self.points.detach().cpu(), dtype=np.float64),
                np.asarray(self.log_weights.detach().cpu(), dtype=np.float64))


@dataclass(frozen=True)
class SolverSettings:
    """Numerical settings shared by every Sinkhorn entry point.

    Attributes
    ----------
    blur
        Target blur; ``eps = blur**2``.
    scaling
        Blur ratio between two annealing levels, in (0, 1).
    tol
        Stop when the dual objective can gain less than ``tol * eps`` (Newton decrement for
        ``OT(alpha, beta)``; largest potential update for ``OT(alpha, alpha)``).
    max_iter
        Most updates at the target ``eps`` per solve; a ``RuntimeWarning`` says when reached.
    """

    blur: float = 0.1
    scaling: float = 0.7
    tol: float = 1e-7
    max_iter: int = 100


def debiased_sinkhorn(sources: Clouds, targets: Clouds, settings: SolverSettings, *,
                      targets_self: Tensor | None = None) -> Tensor:
    r"""Debiased Sinkhorn divergences of ``K`` pairs, differentiable in both point sets.

    .. math::
        S_\varepsilon(\alpha_k, \beta_k) = \mathrm{OT}_\varepsilon(\alpha_k, \beta_k)
        - \tfrac12 \mathrm{OT}_\varepsilon(\alpha_k, \alpha_k)
        - \tfrac12 \mathrm{OT}_\varepsilon(\beta_k, \beta_k)

    ``targets`` has ``K`` rows, or one row shared by every source (then solved once);
    ``targets_self`` may pass ``self_transport(targets, settings)`` when already known.
    Sources of very different sizes are solved in separate batches (see :func:`size_batches`).
    Returns a ``(K,)`` tensor.
    """
    if targets_self is None:
        targets_self = self_transport(targets, settings)
    shared_target = targets.points.shape[0] == 1
    batches, parts = size_batches(sources.counts()), []
    for rows in batches:
        part = sources.take(rows)
        parts.append(entropic_transport(part, targets if shared_target else targets.take(rows),
                                        settings) - 0.5 * self_transport(part, settings))
    order = torch.as_tensor(np.argsort(np.concatenate(batches)), device=sources.points.device)
    return torch.cat(parts)[order] - 0.5 * targets_self


def size_batches(counts: np.ndarray) -> list[np.ndarray]:
    """Rows grouped so that padding to a batch's largest source costs at most
    ``_PADDING_SLACK`` times the unpadded Newton work (which grows as ``n**2``); batches whose
    sources all have at most ``_ALWAYS_BATCHED`` points are never split (per-call overhead
    dominates there)."""
    order = np.argsort(-counts, kind="stable")
    batches: list[list[int]] = []
    for row in order:
        if batches:
            batch = batches[-1]
            largest = counts[batch[0]]
            work = np.sum(counts[batch].astype(np.float64) ** 2) + float(counts[row]) ** 2
            if (largest <= _ALWAYS_BATCHED
                    or (len(batch) + 1) * float(largest) ** 2 <= _PADDING_SLACK * work):
                batch.append(row)
                continue
        batches.append([row])
    return [np.array(batch) for batch in batches]


def entropic_transport(sources: Clouds, targets: Clouds, settings: SolverSettings) -> Tensor:
    """``OT_eps(alpha_k, beta_k)`` for ``K`` pairs, shape ``(K,)``."""
    x, log_a = sources.numpy()
    y, log_b = targets.numpy()
    extent = [values[np.isfinite(log_w)] for values, log_w in ((x, log_a), (y, log_b))]
    diameter = max(e.max() for e in extent) - min(e.min() for e in extent)
    schedule = epsilon_schedule(float(diameter), settings.blur, settings.scaling)
    f, g = (torch.as_tensor(p, device=sources.points.device) for p in cross_potentials(
        x, log_a, y, log_b, schedule, settings.tol, settings.max_iter))
    eps = settings.blur**2
    x, y = sources.points, targets.points
    f_on_x = _soft_min(_cost(x, y.detach()), targets.log_weights, g, eps, reduce_dim=2)
    g_on_y = _soft_min(_cost(x.detach(), y), sources.log_weights, f, eps, reduce_dim=1)
    return (sources.weights * f_on_x).sum(1) + (targets.weights * g_on_y).sum(1)


def self_transport(clouds: Clouds, settings: SolverSettings) -> Tensor:
    """``OT_eps(alpha_k, alpha_k)`` for each row, shape ``(K,)``."""
    eps = settings.blur**2
    f = torch.as_tensor(symmetric_potential(*clouds.numpy(), eps, settings.tol, settings.max_iter),
                        device=clouds.points.device)
    x = clouds.points
    f_on_x = _soft_min(_cost(x, x.detach()), clouds.log_weights, f, eps, reduce_dim=2)
    return 2.0 * (clouds.weights * f_on_x).sum(1)


def _cost(x: Tensor, y: Tensor) -> Tensor:
    """``C_kij = |x_ki - y_kj|^2 / 2`` (``y`` may have a single row)."""
    return 0.5 * (x[:, :, None] - y[:, None, :]) ** 2


def _soft_min(cost: Tensor, log_weights: Tensor, potential: Tensor, eps: float,
              *, reduce_dim: int) -> Tensor:
    """Soft c-transform ``-eps * logsumexp(log w + (h - C) / eps)`` over ``reduce_dim``:
    ``reduce_dim=2`` sums over the targets (``T_beta(g)`` on the sources), ``1`` over the
    sources (``T_alpha(f)`` on the targets)."""
    shifted = (log_weights + potential / eps).unsqueeze(3 - reduce_dim)
    return -eps * torch.logsumexp(shifted - cost / eps, dim=reduce_dim)
