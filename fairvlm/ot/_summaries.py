r"""Debiased Sinkhorn divergences of large 1-D samples, solved on small weighted summaries.

The exact solve of :func:`fairvlm.ot.group_sinkhorn_divergences` costs
:math:`O(n_g^2 N)` per Newton step for a group of :math:`n_g` values against a population of
:math:`N` (about 2 s per statistic at 2,000 pairs), and its matrices grow as :math:`N^2`. Here every
sample of more than ``max_atoms`` values is first replaced by a weighted measure of about
``max_atoms`` atoms, and the same exact solver runs on those (``O(max_atoms^3)`` per step,
whatever the sample sizes).

Summary of a sample :math:`x_{(1)} \le \dots \le x_{(n)}`, :math:`n >` ``max_atoms``:

- cells: the value axis is cut into ``max_atoms`` cells of equal increment of

  .. math:: G(x) = \int_{-\infty}^{x} \hat\rho(t)^{1/3}\, dt,

  with :math:`\hat\rho` the sample's density, constant between ``8 * max_atoms`` knots at
  equally spaced ranks (a stretch of mass :math:`m_k` and width :math:`w_k` adds
  :math:`m_k^{1/3} w_k^{2/3}` to :math:`G`). Cell widths then go as :math:`\rho^{-1/3}`, the
  allocation that minimises the mean within-cell variance for a given number of cells
  (Panter and Dite, 1951): narrower than equal-width cells where values are dense, far
  narrower than equal-mass cells in the tails;
- isolated values: a value with fewer than 8 values (itself included) within one ``blur`` of
  it is an atom of its own, and so are the 8 smallest and the 8 largest values. Merging values
  next to a gap, or at the edge of a sample that the other distribution extends beyond, is
  what the divergence is most sensitive to (see the error below), and few values are isolated
  (the far tails);
- each cell's values become one atom at their mean, with their share of the mass:
  :math:`\bar x_c = \tfrac{1}{n_c} \sum_{i \in c} x_{(i)}`, :math:`w_c = n_c / n`. Equal
  values always share an atom.

Replacing values by their cell's mean moves the sample by exactly

.. math:: \delta = W_2^2(\alpha, \bar\alpha)
    = \frac{1}{n} \sum_c \sum_{i \in c} (x_{(i)} - \bar x_c)^2,

the mean within-cell variance (:attr:`Summary.moved`). To first order in :math:`\delta`, the
change of :math:`S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta) -
\tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha) - \tfrac12 \mathrm{OT}_\varepsilon(\beta,
\beta)` when :math:`\alpha` is summarised is

.. math::
    \tfrac12 \sum_i a_i\, (x_i - \bar x_{c(i)})^2\,
    \frac{V_\beta(x_i) - V_\alpha(x_i)}{\varepsilon},

where :math:`V_\beta(x)` is the variance of :math:`y` given :math:`x` under the optimal plan of
:math:`\mathrm{OT}_\varepsilon(\alpha, \beta)` and :math:`V_\alpha(x)` the same under that of
:math:`\mathrm{OT}_\varepsilon(\alpha, \alpha)` (the potential's curvature is
:math:`1 - V/\varepsilon`; the 1s of the two terms cancel in the debiased form), and the same
with the roles swapped when :math:`\beta` is summarised. The error is therefore
:math:`O(\delta_\alpha + \delta_\beta)`, small where the two distributions look alike, and
largest next to a gap of one distribution that the other fills (there :math:`V / \varepsilon`
grows as the squared gap over :math:`\varepsilon`), hence the isolated-value rule.

Measured against the exact solve (``python bench/bench_sinkhorn.py --summaries``, default
``max_atoms`` = 256; 12 data sets of probabilities in [0, 1], gamma-tailed per-pair losses and
similarities, populations of 1,000 and 2,000 with groups of 20 to 1,500, groups alike and
unlike the population, and two stress cases, each at blur 0.05, 0.1 and 0.2 times the standard
deviation): every group's divergence is within 7.0e-6 times the variance of the values
(:data:`VARIANCE_ERROR_BOUND` rounds it up to 1e-5, under 0.1 % of any divergence above 0.01
times the variance), 7.5e-4 relative at most, and within :math:`0.6\,(\delta_g + \delta_D)`.
At 10,000 and 100,000 values, where the exact solve is out of reach, against 1,024-atom
summaries: within 2.5e-6 times the variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fairvlm.ot._arrays import ArrayLike, as_group_codes, as_sample, check_count, host_sample
from fairvlm.ot._groups import group_members
from fairvlm.ot._pairs import solver_settings
from fairvlm.ot._sinkhorn import Clouds, SolverSettings, debiased_sinkhorn

MAX_ATOMS = 256
# Bound on the error of a group's divergence at MAX_ATOMS, as a fraction of the variance of the
# values: the largest measured by ``bench/bench_sinkhorn.py --summaries`` is 7.0e-6 (see above).
VARIANCE_ERROR_BOUND = 1e-5
_KNOTS_PER_ATOM = 8  # density knots per cell for the rho^(1/3) allocation
# A value with fewer values than this within one blur, and each of this many smallest and
# largest values, is an atom of its own.
_ISOLATED_BELOW = 8


class Summary(NamedTuple):
    """A weighted 1-D measure standing in for a sample (:func:`summarise`).

    Attributes
    ----------
    points
        Ascending atom positions.
    weights
        Atom masses, summing to 1.
    moved
        ``W2^2`` between the sample and this summary (0 when the sample is its own summary).
    """

    points: np.ndarray
    weights: np.ndarray
    moved: float


class SummarisedDivergences(NamedTuple):
    """Result of :func:`summarised_group_sinkhorn_divergences` (NaN for groups not solved).

    Attributes
    ----------
    divergences
        ``(n_groups,)`` debiased Sinkhorn divergences ``S_eps(D_g, D)``.
    counts
        ``(n_groups,)`` members of each group.
    moved
        ``(n_groups,)`` ``W2^2`` between each group's sample and its summary.
    population_moved
        ``W2^2`` between the population's sample and its summary.
    """

    divergences: np.ndarray
    counts: np.ndarray
    moved: np.ndarray
    population_moved: float


def summarise(values: ArrayLike, blur: float, *, max_atoms: int = MAX_ATOMS) -> Summary:
    """The summary of a 1-D sample described in the module docstring.

    A sample of at most ``max_atoms`` values is returned as it is (sorted, uniform weights).
    ``blur`` decides which values are isolated (fewer than 8 values within ``blur``).
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = ordered.size
    if n <= max_atoms:
        return Summary(ordered, np.full(n, 1.0 / n), 0.0)
    distinct = np.concatenate(([True], ordered[1:] > ordered[:-1]))  # equal values stay together
    starts = np.flatnonzero((_cell_starts(ordered, max_atoms) | _isolated_starts(ordered, blur))
                            & distinct)
    counts = np.diff(np.append(starts, n))
    means = np.add.reduceat(ordered, starts) / counts
    moved = float(np.mean((ordered - np.repeat(means, counts)) ** 2))
    return Summary(means, counts / n, moved)


def summarised_group_sinkhorn_divergences(values: ArrayLike, group_index: ArrayLike,
                                          n_groups: int, *, blur: float = 0.1,
                                          max_atoms: int = MAX_ATOMS,
                                          min_count: int = 1) -> SummarisedDivergences:
    r"""Debiased Sinkhorn divergence of each group's values to all values, on summaries.

    .. math::
        R_g = S_\varepsilon(\bar D_g, \bar D), \qquad \varepsilon = \mathrm{blur}^2,

    with :math:`\bar D_g` and :math:`\bar D` the :func:`summarise` summaries of the group's
    values and of all ``values``; samples of at most ``max_atoms`` values are used as they
    are, so with every sample that small this equals
    :func:`fairvlm.ot.group_sinkhorn_divergences` (up to rounding). All groups are solved in
    one batched call of the exact solver, at its default settings. Numpy in, numpy out (no
    gradients).

    Parameters
    ----------
    values
        ``(N,)`` per-pair statistics.
    group_index
        ``(N,)`` integer group codes ``0 .. n_groups - 1``; negative = in no group (still part
        of the population).
    n_groups
        Number of groups of the attribute.
    blur
        Entropic blur, in the units of the values.
    max_atoms
        Size of the summaries (see the module docstring for the error it buys).
    min_count
        Groups with fewer members get NaN and are not solved.
    """
    settings = solver_settings(blur, SolverSettings.scaling, SolverSettings.tol,
                               SolverSettings.max_iter)
    max_atoms = check_count(max_atoms, "max_atoms")
    sample = host_sample(as_sample(values, "values", check_finite=False), "values")
    members = group_members(as_group_codes(group_index, sample.size, n_groups), n_groups)
    counts = np.array([len(rows) for rows in members], dtype=np.int64)
    kept = np.flatnonzero(counts >= check_count(min_count, "min_count"))
    divergences, moved = np.full(n_groups, np.nan), np.full(n_groups, np.nan)
    population = summarise(sample, settings.blur, max_atoms=max_atoms)
    if kept.size:
        groups = [summarise(sample[members[g]], settings.blur, max_atoms=max_atoms)
                  for g in kept]
        divergences[kept] = debiased_sinkhorn(_clouds(groups), _clouds([population]),
                                              settings).value
        moved[kept] = [summary.moved for summary in groups]
    return SummarisedDivergences(divergences, counts, moved, population.moved)


def _cell_starts(ordered: np.ndarray, cells: int) -> np.ndarray:
    """True at each sorted value that opens one of ``cells`` cells of equal ``G`` increment
    (index 0 included)."""
    n = ordered.size
    stretches = min(n - 1, _KNOTS_PER_ATOM * cells)
    knots = np.arange(stretches + 1) * (n - 1) // stretches  # strictly increasing ranks
    positions = ordered[knots]
    increments = (np.diff(knots) / n) ** (1 / 3) * np.diff(positions) ** (2 / 3)
    cumulative = np.concatenate(([0.0], np.cumsum(increments)))
    cell = np.zeros(n, dtype=np.int64)
    if cumulative[-1] > 0:  # else every value is equal: one cell
        share = np.interp(ordered, positions, cumulative) / cumulative[-1]
        cell = np.minimum((share * cells).astype(np.int64), cells - 1)
    return np.concatenate(([True], cell[1:] != cell[:-1]))


def _isolated_starts(ordered: np.ndarray, blur: float) -> np.ndarray:
    """True at each isolated or extreme value and at the value after it, so each is an atom of
    its own."""
    neighbours = (np.searchsorted(ordered, ordered + blur, side="right")
                  - np.searchsorted(ordered, ordered - blur, side="left"))
    isolated = neighbours < _ISOLATED_BELOW
    isolated[:_ISOLATED_BELOW] = isolated[-_ISOLATED_BELOW:] = True
    return isolated | np.concatenate(([False], isolated[:-1]))


def _clouds(summaries: Sequence[Summary]) -> Clouds:
    """The summaries as one padded batch of weighted measures (padding repeats a row's first
    atom with weight 0, as :meth:`Clouds.from_indices` does)."""
    width = max(summary.points.size for summary in summaries)
    points = np.empty((len(summaries), width))
    log_weights = np.full((len(summaries), width), -np.inf)
    for row, (atoms, weights, _) in enumerate(summaries):
        points[row] = atoms[0]
        points[row, :atoms.size] = atoms
        log_weights[row, :atoms.size] = np.log(weights)
    return Clouds(points, log_weights)
