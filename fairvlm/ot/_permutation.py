r"""Permutation null for a group's distance to the population: signal or noise?

Shuffling the group labels keeps every group's size and the population, and breaks any link
between group and value. For ``B`` shuffles with statistics :math:`T_b` and the observed
:math:`T`, the p-value is

.. math:: p = \frac{1 + \#\{b : T_b \ge T\}}{1 + B},

which is exactly valid (never below the chance of a false alarm) for any ``B``. The ``B``
shuffled groups are solved in batches (chunks that bound memory); the population's own
term :math:`\mathrm{OT}_\varepsilon(D, D)` is solved once. One Sinkhorn solve costs
``O(n_g^2 N)`` (``n_g`` group size, ``N`` population), so for thousands of values the
``wasserstein`` statistic is the practical choice: the population is sorted once and the group
labels are shuffled over the sorted values, so every shuffled group is already sorted and its
``W2^2`` follows from the quantile coupling in ``O(N)`` per shuffle, with no sort.

The ``B x N`` shuffles are never held at once: they are drawn a block of rows at a time.
``Generator.permuted(..., axis=1)`` shuffles row after row from one stream, so the blocks
drawn from a seed are the rows of the one-shot ``B x N`` draw from it, and the statistics and
p-values are those of the whole matrix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch

from fairvlm.errors import ConfigError, DataError
from fairvlm.ot._arrays import ArrayLike, as_group_codes, as_sample, check_count
from fairvlm.ot._groups import group_members
from fairvlm.ot._pairs import solver_settings
from fairvlm.ot._quantiles import monotone_coupling, squared_w2_rows
from fairvlm.ot._sinkhorn import Clouds, SolverSettings, debiased_sinkhorn, self_transport

STATISTICS: tuple[str, ...] = ("sinkhorn", "wasserstein")
_CHUNK_ENTRIES = 2**22  # cost-matrix entries per batched Sinkhorn solve
_SHUFFLE_ENTRIES = 2**21  # shuffled labels per block of W2 shuffles (8 MB of int32)
_ROW_UNROLL = 8  # W2 blocks are whole multiples of this many rows, so that BLAS's row-unrolled
# matrix-vector kernels group the rows as in one B x N matrix (bit-identical nulls with one
# BLAS thread; with more, the split between threads may move the last bits)
_TIE_RTOL = 1e-9  # shuffled statistics this close to the observed one count as >= it,
_TIE_SOLVER_ERRORS = 10  # and so do those within this many solver tolerances (tol * eps)


class GroupPermutationTest(NamedTuple):
    """Per-group results of :func:`group_permutation_null` (NaN for groups not tested)."""

    observed: np.ndarray
    p_values: np.ndarray
    counts: np.ndarray


def permutation_null(values: ArrayLike, group_index: ArrayLike, group: int, *,
                     statistic: str = "sinkhorn", n_permutations: int = 200, seed: int = 0,
                     blur: float = 0.1) -> tuple[float, float]:
    """Observed distance of one group to the population and its permutation p-value.

    Parameters
    ----------
    values
        ``(N,)`` per-pair statistics; the population is all of them.
    group_index
        ``(N,)`` integer group codes; negative = in no group.
    group
        The code of the group to test.
    statistic
        ``"sinkhorn"``: the debiased Sinkhorn divergence ``S_eps(D_g, D)`` with ``eps = blur**2``
        (:func:`group_sinkhorn_divergences`); ``"wasserstein"``: ``W2^2(D_g, D) / 2``.
    n_permutations
        Number of label shuffles ``B``.
    seed
        Seed of the shuffles (numpy ``default_rng``).
    blur
        Blur of the Sinkhorn divergence.

    Returns
    -------
    (observed, p_value)
        Floats; ``p_value = (1 + #{b : T_b >= observed}) / (1 + B)``.
    """
    sample = as_sample(values, "values").detach()
    codes = np.asarray(group_index.detach().cpu() if isinstance(group_index, torch.Tensor)
                       else group_index)
    codes = as_group_codes(codes, sample.numel(), max(int(group), int(codes.max(initial=0))) + 1)
    members = np.flatnonzero(codes == group)
    if members.size == 0:
        raise DataError(f"group_index: no value belongs to group {group}")
    observed, p_values = _test(sample, [members], statistic, n_permutations, seed, blur)
    return float(observed[0]), float(p_values[0])


def group_permutation_null(values: ArrayLike, group_index: ArrayLike, n_groups: int, *,
                           statistic: str = "sinkhorn", n_permutations: int = 200, seed: int = 0,
                           blur: float = 0.1, min_count: int = 1) -> GroupPermutationTest:
    """:func:`permutation_null` for every group with at least ``min_count`` members, from one
    set of label shuffles (each shuffle reassigns all groups at once)."""
    sample = as_sample(values, "values").detach()
    members = group_members(as_group_codes(group_index, sample.numel(), n_groups), n_groups)
    counts = np.array([len(m) for m in members], dtype=np.int64)
    tested = np.flatnonzero(counts >= check_count(min_count, "min_count"))
    observed = np.full(n_groups, np.nan)
    p_values = np.full(n_groups, np.nan)
    if tested.size:
        observed[tested], p_values[tested] = _test(sample, [members[g] for g in tested],
                                                   statistic, n_permutations, seed, blur)
    return GroupPermutationTest(observed, p_values, counts)


def _test(sample: torch.Tensor, members: list[np.ndarray], statistic: str, n_permutations: int,
          seed: int, blur: float) -> tuple[np.ndarray, np.ndarray]:
    """Observed statistics and p-values of disjoint member sets under shared label shuffles."""
    distance, tie = _distance(statistic, sample, blur)
    n_permutations = check_count(n_permutations, "n_permutations")
    nulls = (_wasserstein_nulls(sample, members, n_permutations, seed)
             if statistic == "wasserstein"
             else _shuffled_nulls(distance, sample.numel(), members, n_permutations, seed))
    observed, p_values = np.empty(len(members)), np.empty(len(members))
    for k, (positions, null) in enumerate(zip(members, nulls, strict=True)):
        observed[k] = float(distance(positions[None]))
        exceed = np.count_nonzero(null >= observed[k] - _TIE_RTOL * abs(observed[k]) - tie)
        p_values[k] = (1 + exceed) / (1 + n_permutations)
    return observed, p_values


def _shuffle_blocks(row: np.ndarray, n_rows: int, block_rows: int,
                    rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The rows of ``rng.permuted(np.tile(row, (n_rows, 1)), axis=1)`` (independent shuffles of
    ``row``), ``block_rows`` at a time."""
    for start in range(0, n_rows, block_rows):
        yield rng.permuted(np.tile(row, (min(block_rows, n_rows - start), 1)), axis=1)


def _shuffled_nulls(distance: Callable[[np.ndarray], torch.Tensor], n_values: int,
                    members: list[np.ndarray], n_permutations: int, seed: int) -> list[np.ndarray]:
    """Each member set's statistic on ``n_permutations`` shuffles of all positions: shuffle
    ``b`` gives set ``k`` the positions ``shuffle_b[o_k : o_k + n_k]``, so sets stay disjoint.

    Set ``k`` is solved ``max(1, _CHUNK_ENTRIES // (n_k N))`` shuffles at a time; each set
    draws the shuffles again from ``seed``, one solve's worth at a time (drawing costs ``O(N)``
    per shuffle, nothing next to a solve), so no more than a solve's shuffles are held."""
    offsets = np.cumsum([0, *(len(m) for m in members)])
    nulls = []
    for k in range(len(members)):
        rows = max(1, _CHUNK_ENTRIES // ((offsets[k + 1] - offsets[k]) * n_values))
        blocks = _shuffle_blocks(np.arange(n_values), n_permutations, rows,
                                 np.random.default_rng(seed))
        nulls.append(np.concatenate([distance(block[:, offsets[k]:offsets[k + 1]]).cpu().numpy()
                                     for block in blocks]))
    return nulls


def _wasserstein_nulls(sample: torch.Tensor, members: list[np.ndarray], n_permutations: int,
                       seed: int) -> list[np.ndarray]:
    """Each member set's ``W2^2 / 2`` to ``sample`` on ``n_permutations`` shuffles of the set
    labels over the sorted population (label ``k`` = set ``k``, ``-1`` = in no set), drawn in
    blocks of about ``_SHUFFLE_ENTRIES`` labels."""
    values = sample.cpu().numpy().astype(np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    labels = np.full(sample.numel(), -1, dtype=np.int32)
    for k, positions in enumerate(members):
        labels[positions] = k
    integrals = [_quantile_integrals(sorted_values, len(positions)) for positions in members]
    block_rows = max(1, _SHUFFLE_ENTRIES // (_ROW_UNROLL * values.size)) * _ROW_UNROLL
    nulls = [np.empty(n_permutations) for _ in members]
    blocks = _shuffle_blocks(labels[order], n_permutations, block_rows,
                             np.random.default_rng(seed))
    for start, block in zip(range(0, n_permutations, block_rows), blocks, strict=True):
        for k, null in enumerate(nulls):
            null[start:start + block.shape[0]] = 0.5 * _sorted_group_squared_w2(
                sorted_values, block, k, integrals[k])
    return nulls


def _quantile_integrals(sorted_values: np.ndarray, size: int) -> np.ndarray:
    r"""``q_i = sum_{k: i_k = i} w_k y_(j_k)`` for ``i < size``: the integral of the quantile
    function of the ascending ``sorted_values`` over ``[i / size, (i + 1) / size]``, from the
    quantile coupling (:func:`monotone_coupling`) of ``size`` points with the population."""
    source_index, reference_index, masses = monotone_coupling(size, sorted_values.size)
    return np.bincount(source_index, weights=masses * sorted_values[reference_index],
                       minlength=size)


def _sorted_group_squared_w2(sorted_values: np.ndarray, labels: np.ndarray, group: int,
                             quantile_integrals: np.ndarray) -> np.ndarray:
    r"""``W2^2(D_b, D)`` for every row ``b`` of ``labels`` (``B, N``), where ``D`` is the
    ascending ``sorted_values`` and ``D_b`` its values labelled ``group`` in row ``b``.

    The positions of a row's labels come out of ``np.nonzero`` in ascending order, so every
    ``D_b`` (size ``n``) is already sorted. Expanding the square of the quantile coupling
    (:func:`monotone_coupling`, pieces ``k`` with masses ``w_k`` summing to ``1/n`` over each
    source point ``i``):

    .. math::
        W_2^2 = \frac{1}{n}\sum_i x_{(i)}^2 + \frac{1}{N}\sum_j y_{(j)}^2
                - 2 \sum_i x_{(i)} q_i, \qquad q_i = \sum_{k: i_k = i} w_k\, y_{(j_k)},

    where ``q`` (``quantile_integrals``, :func:`_quantile_integrals` with ``size = n``) is the
    same for every shuffle: one gather and one matrix-vector product per group. Every row must
    hold the same number of labels ``group``.
    """
    columns = np.nonzero(labels == group)[1].reshape(labels.shape[0], -1)
    rows = sorted_values[columns]
    squared = np.einsum("bi,bi->b", rows, rows) / rows.shape[1]
    return (squared + np.mean(sorted_values**2) - 2.0 * rows @ quantile_integrals).clip(min=0.0)


def _distance(statistic: str, sample: torch.Tensor,
              blur: float) -> tuple[Callable[[np.ndarray], torch.Tensor], float]:
    """``distance(index)``: the statistic of each row's sample ``sample[index[k]]`` against the
    whole ``sample``, shape ``(K,)``, solved as one batch (callers bound ``K``); and the
    absolute difference below which two statistics are equal up to the solver's accuracy."""
    if statistic == "wasserstein":
        def half_w2(index: np.ndarray) -> torch.Tensor:
            return 0.5 * squared_w2_rows(sample[torch.as_tensor(index, device=sample.device)],
                                         sample)

        return half_w2, 0.0
    if statistic != "sinkhorn":
        raise ConfigError(f"statistic: expected one of {', '.join(STATISTICS)}, got {statistic!r}")
    settings = solver_settings(blur, SolverSettings.scaling, SolverSettings.tol,
                               SolverSettings.max_iter)
    values = sample.detach().cpu().numpy()
    population = Clouds.from_matrix(values[None])
    population_self = self_transport(population, settings)

    def sinkhorn(index: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(debiased_sinkhorn(Clouds.from_matrix(values[index]), population,
                                                 settings, targets_self=population_self).value)

    return sinkhorn, _TIE_SOLVER_ERRORS * settings.tol * settings.blur**2
