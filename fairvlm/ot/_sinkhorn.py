r"""Debiased Sinkhorn divergences of batches of 1-D measures, with their gradients (numpy).

Convention (geomloss ``SamplesLoss("sinkhorn", p=2, blur=blur)``): cost
:math:`C(x, y) = |x - y|^2 / 2`, :math:`\varepsilon = \mathrm{blur}^2`,

.. math::
    \mathrm{OT}_\varepsilon(\alpha, \beta)
    = \min_{\pi \in \Pi(\alpha, \beta)} \langle \pi, C \rangle
      + \varepsilon\, \mathrm{KL}(\pi \,|\, \alpha \otimes \beta)
    = \max_{f, g}\ \langle \alpha, f \rangle + \langle \beta, g \rangle
      - \varepsilon \langle \alpha \otimes \beta, e^{(f \oplus g - C)/\varepsilon} - 1 \rangle,

solved for the optimal potentials by :mod:`fairvlm.ot._potentials`. The value is evaluated with
one soft c-transform from the potentials, as geomloss does:
:math:`\mathrm{OT}_\varepsilon(\alpha, \beta) = \langle a, T_b(g)(x) \rangle + \langle b,
T_a(f)(y) \rangle` and :math:`\mathrm{OT}_\varepsilon(\alpha, \alpha) = 2 \langle a,
T_a(f)(x) \rangle`, with :math:`T_b(g)(x_i) = -\varepsilon \log \sum_j b_j e^{(g_j -
C(x_i, y_j))/\varepsilon}`.

Gradients with respect to the points follow from the envelope theorem (the potentials are
optimal, so only the explicit dependence of the soft c-transform counts):

.. math::
    \partial_{x_i} \mathrm{OT}_\varepsilon(\alpha, \beta) = a_i \textstyle\sum_j P_{ij}
        (x_i - y_j), \quad
    \partial_{y_j} \mathrm{OT}_\varepsilon(\alpha, \beta) = b_j \textstyle\sum_i Q_{ij}
        (y_j - x_i), \quad
    \partial_{x_i} \mathrm{OT}_\varepsilon(\alpha, \alpha) = 2 a_i \textstyle\sum_j R_{ij}
        (x_i - x_j),

with :math:`P_{ij} = \mathrm{softmax}_j(\log b_j + (g_j - C_{ij})/\varepsilon)`,
:math:`Q_{ij} = \mathrm{softmax}_i(\log a_i + (f_i - C_{ij})/\varepsilon)` and :math:`R` the
same as :math:`P` with :math:`(a, f)` on both sides. They are returned as arrays, so a caller
on an accelerator moves its values to the host once and the gradients back once
(:mod:`fairvlm.ot._autograd`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fairvlm.ot._potentials import (
    cross_potentials,
    epsilon_schedule,
    half_squared_distances,
    soft_min_with_plan,
    symmetric_potential,
)

_PADDING_SLACK = 1.5
_ALWAYS_BATCHED = 256


@dataclass(frozen=True)
class Clouds:
    """A batch of ``K`` 1-D empirical measures padded to a common length ``L``.

    Attributes
    ----------
    points
        ``(K, L)`` float64; row ``k`` holds its points first, then padding.
    log_weights
        ``(K, L)``: the log point masses of row ``k`` (``-log(n_k)`` for a uniform measure of
        ``n_k`` points), ``-inf`` on its padding.
    """

    points: np.ndarray
    log_weights: np.ndarray

    @classmethod
    def from_matrix(cls, points: np.ndarray) -> Clouds:
        """Each row of ``points`` (``K, n``) is one uniform measure; no padding."""
        points = np.asarray(points, dtype=np.float64)
        return cls(points, np.full_like(points, -math.log(points.shape[1])))

    @classmethod
    def from_indices(cls, sample: np.ndarray, index: np.ndarray, counts: np.ndarray) -> Clouds:
        """Row ``k`` is the uniform measure on ``sample[index[k, :counts[k]]]``; the rest of
        ``index[k]`` is padding and may hold any valid position."""
        inside = np.arange(index.shape[1])[None, :] < counts[:, None]
        return cls(np.asarray(sample, dtype=np.float64)[index],
                   np.where(inside, -np.log(counts)[:, None], -np.inf))

    @property
    def weights(self) -> np.ndarray:
        """``(K, L)`` point masses, 0 on padding."""
        return np.exp(self.log_weights)

    def counts(self) -> np.ndarray:
        """Number of points of each row."""
        return np.isfinite(self.log_weights).sum(1)

    def take(self, rows: np.ndarray) -> Clouds:
        """The measures ``rows``, with the padding none of them needs dropped."""
        width = int(self.counts()[rows].max())
        return Clouds(self.points[rows, :width], self.log_weights[rows, :width])


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
        ``OT(alpha, beta)``; largest fixed-point residual for ``OT(alpha, alpha)``).
    max_iter
        Most updates at the target ``eps`` per solve; a ``RuntimeWarning`` says when reached.
    """

    blur: float = 0.1
    scaling: float = 0.7
    tol: float = 1e-7
    max_iter: int = 100


@dataclass(frozen=True)
class Transport:
    """Values of ``K`` transport problems and, when asked for, their gradients.

    Attributes
    ----------
    value
        ``(K,)`` values.
    source_grad
        ``(K, L)``: ``d value_k / d x_kl`` for the source points (0 on padding), or None.
    target_grad
        ``(K, m)``: ``d value_k / d y_j`` for the target points of problem ``k`` (a shared
        target row gets one gradient row per problem), or None.
    """

    value: np.ndarray
    source_grad: np.ndarray | None = None
    target_grad: np.ndarray | None = None


def debiased_sinkhorn(sources: Clouds, targets: Clouds, settings: SolverSettings, *,
                      gradients: bool = False, targets_self: Transport | None = None
                      ) -> Transport:
    r"""Debiased Sinkhorn divergences of ``K`` pairs of measures.

    .. math::
        S_\varepsilon(\alpha_k, \beta_k) = \mathrm{OT}_\varepsilon(\alpha_k, \beta_k)
        - \tfrac12 \mathrm{OT}_\varepsilon(\alpha_k, \alpha_k)
        - \tfrac12 \mathrm{OT}_\varepsilon(\beta_k, \beta_k)

    ``targets`` has ``K`` rows, or one row shared by every source (then solved once);
    ``targets_self`` may pass ``self_transport(targets, settings, gradients=...)`` when already
    known. Sources of very different sizes are solved in separate batches (see
    :func:`size_batches`). With ``gradients``, the result holds the gradients of each
    ``S_k`` with respect to its source and target points.
    """
    if targets_self is None:
        targets_self = self_transport(targets, settings, gradients=gradients)
    shared_target = targets.points.shape[0] == 1
    n_sources, width = sources.points.shape
    value = np.empty(n_sources)
    source_grad = np.zeros((n_sources, width)) if gradients else None
    target_grad = np.zeros((n_sources, targets.points.shape[1])) if gradients else None
    for rows in size_batches(sources.counts()):
        part = sources.take(rows)
        cross = entropic_transport(part, targets if shared_target else targets.take(rows),
                                   settings, gradients=gradients)
        own = self_transport(part, settings, gradients=gradients)
        value[rows] = cross.value - 0.5 * own.value
        if gradients:
            source_grad[rows, :part.points.shape[1]] = cross.source_grad - 0.5 * own.source_grad
            target_grad[rows, :cross.target_grad.shape[1]] = cross.target_grad
    value -= 0.5 * targets_self.value
    if gradients:
        target_grad -= 0.5 * targets_self.source_grad
    return Transport(value, source_grad, target_grad)


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


def entropic_transport(sources: Clouds, targets: Clouds, settings: SolverSettings, *,
                       gradients: bool = False) -> Transport:
    """``OT_eps(alpha_k, beta_k)`` for ``K`` pairs (``targets`` may have a single row)."""
    x, log_a, y, log_b = sources.points, sources.log_weights, targets.points, targets.log_weights
    extent = [values[np.isfinite(log_w)] for values, log_w in ((x, log_a), (y, log_b))]
    diameter = max(e.max() for e in extent) - min(e.min() for e in extent)
    schedule = epsilon_schedule(float(diameter), settings.blur, settings.scaling)
    f, g = cross_potentials(x, log_a, y, log_b, schedule, settings.tol, settings.max_iter)
    eps = settings.blur**2
    cost_over_eps = half_squared_distances(x, y) / eps
    f_on_x, to_targets = soft_min_with_plan(cost_over_eps, log_b + g / eps, eps)
    g_on_y, to_sources = soft_min_with_plan(cost_over_eps.transpose(0, 2, 1), log_a + f / eps, eps)
    a, b = sources.weights, targets.weights
    value = (a * f_on_x).sum(1) + (b * g_on_y).sum(1)
    if not gradients:
        return Transport(value)
    return Transport(value, a * (x - _averages(to_targets, y)), b * (y - _averages(to_sources, x)))


def self_transport(clouds: Clouds, settings: SolverSettings, *,
                   gradients: bool = False) -> Transport:
    """``OT_eps(alpha_k, alpha_k)`` for each row (``target_grad`` stays None: the source
    gradient is the whole gradient)."""
    eps = settings.blur**2
    x, log_a = clouds.points, clouds.log_weights
    f = symmetric_potential(x, log_a, eps, settings.tol, settings.max_iter)
    f_on_x, plan = soft_min_with_plan(half_squared_distances(x, x) / eps, log_a + f / eps, eps)
    a = clouds.weights
    value = 2.0 * (a * f_on_x).sum(1)
    if not gradients:
        return Transport(value)
    return Transport(value, 2.0 * a * (x - _averages(plan, x)))



def _averages(plan: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``sum_j P_kij z_kj``: each row's average of the other side's points under ``P`` (``K,
    n, m``); ``points`` is ``(K, m)`` or one shared row ``(1, m)``."""
    return np.einsum("kij,kj->ki", plan, np.broadcast_to(points, (plan.shape[0], plan.shape[2])))
