"""Distance of every group's sample to the population's sample, all groups in one call."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from fairvlm.ot._arrays import (
    ArrayLike,
    as_group_codes,
    as_sample,
    check_count,
    host_sample,
    input_device,
    output_dtype,
    to_caller,
)
from fairvlm.ot._autograd import with_jacobians
from fairvlm.ot._pairs import solver_settings
from fairvlm.ot._quantiles import squared_w2_rows
from fairvlm.ot._sinkhorn import Clouds, debiased_sinkhorn


def group_members(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Positions of the members of each group ``0 .. n_groups - 1`` (codes < 0 belong to none)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    return [order[bounds[g]:bounds[g + 1]] for g in range(n_groups)]


def padded_index(members: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Non-empty position arrays as one ``(K, max size)`` matrix (padded with each row's first
    position) and their sizes, the input of :meth:`Clouds.from_indices`."""
    counts = np.array([len(rows) for rows in members], dtype=np.int64)
    index = np.empty((len(members), int(counts.max())), dtype=np.int64)
    for row, positions in zip(index, members, strict=True):
        row[:] = positions[0]
        row[:len(positions)] = positions
    return index, counts


@dataclass(frozen=True)
class _GroupSamples:
    sample: torch.Tensor       # (N,) float64, the values
    population: torch.Tensor   # (M,) float64, the reference sample
    counts: np.ndarray         # (n_groups,) members of each group
    kept: np.ndarray           # codes of the groups with at least min_count members
    members: list[np.ndarray]  # positions of each kept group's members

    def on_host(self) -> tuple[np.ndarray, np.ndarray]:
        """``sample`` and ``population`` as numpy arrays, checked to be finite (one device
        read when they are the same tensor)."""
        sample = host_sample(self.sample, "values")
        same = self.population is self.sample
        return sample, sample if same else host_sample(self.population, "reference")


def _group_samples(values: ArrayLike, group_index: ArrayLike, n_groups: int, min_count: int,
                   reference: ArrayLike | None) -> _GroupSamples:
    device = input_device(values, reference)
    sample = as_sample(values, "values", device=device, check_finite=False)
    population = sample if reference is None else as_sample(
        reference, "reference", device=device, check_finite=False)
    codes = as_group_codes(group_index, sample.numel(), n_groups)
    members = group_members(codes, n_groups)
    counts = np.array([len(m) for m in members], dtype=np.int64)
    kept = np.flatnonzero(counts >= check_count(min_count, "min_count"))
    return _GroupSamples(sample, population, counts, kept, [members[g] for g in kept])


def _on(tensor: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(positions, device=tensor.device)


def _all_groups(per_kept_group: torch.Tensor | None, groups: _GroupSamples,
                dtype: torch.dtype | None) -> torch.Tensor | np.ndarray:
    """The kept groups' distances as a ``(n_groups,)`` result with NaN elsewhere, in the
    caller's kind (assembled without reading from or copying to the device)."""
    n_groups = len(groups.counts)
    if per_kept_group is not None and len(groups.kept) == n_groups:
        return to_caller(per_kept_group, dtype)
    nan = torch.full((), math.nan, dtype=torch.float64, device=groups.sample.device)
    slot = {int(group): k for k, group in enumerate(groups.kept)}
    full = torch.stack([nan if per_kept_group is None or g not in slot
                        else per_kept_group[slot[g]] for g in range(n_groups)])
    return to_caller(full, dtype)


def group_sinkhorn_divergences(values: ArrayLike, group_index: ArrayLike, n_groups: int, *,
                               blur: float = 0.1, min_count: int = 1,
                               reference: ArrayLike | None = None, scaling: float = 0.7,
                               tol: float = 1e-7,
                               max_iter: int = 100) -> tuple[torch.Tensor | np.ndarray, np.ndarray]:
    r"""Debiased Sinkhorn divergence of each group's values to the population's.

    .. math::
        R_g = S_\varepsilon(D_g, D) = \mathrm{OT}_\varepsilon(D_g, D)
        - \tfrac12 \mathrm{OT}_\varepsilon(D_g, D_g) - \tfrac12 \mathrm{OT}_\varepsilon(D, D)

    with :math:`D_g` the uniform empirical measure of the values in group ``g`` and :math:`D`
    that of ``reference`` (default: all ``values``, grouped or not), cost ``|x - y|^2 / 2``
    and ``eps = blur**2`` (see :func:`sinkhorn_divergence`). All groups and all three terms are
    solved in one batched call.

    Parameters
    ----------
    values
        ``(N,)`` per-pair statistics (e.g. the per-pair losses of a batch).
    group_index
        ``(N,)`` integer group codes ``0 .. n_groups - 1``; negative = in no group.
    n_groups
        Number of groups of the attribute.
    blur, scaling, tol, max_iter
        As in :func:`sinkhorn_divergence`.
    min_count
        Groups with fewer members get NaN and are not solved.
    reference
        The population sample; default ``values``.

    Returns
    -------
    divergences
        ``(n_groups,)``: a torch tensor differentiable with respect to ``values`` and
        ``reference`` when ``values`` is a tensor, else a numpy array.
    counts
        ``(n_groups,)`` numpy int64 array: members of each group (so callers can log skipped
        groups).
    """
    settings = solver_settings(blur, scaling, tol, max_iter)
    groups = _group_samples(values, group_index, n_groups, min_count, reference)
    sample, population = groups.on_host()
    divergences = None
    if groups.kept.size:
        index, counts = padded_index(groups.members)
        wanted = torch.is_grad_enabled() and (groups.sample.requires_grad
                                              or groups.population.requires_grad)
        solved = debiased_sinkhorn(Clouds.from_indices(sample, index, counts),
                                   Clouds.from_matrix(population[None]), settings,
                                   gradients=wanted)
        jacobians = []
        if wanted:
            inside = np.arange(index.shape[1])[None, :] < counts[:, None]
            sample_jacobian = np.zeros((len(counts), sample.size))
            sample_jacobian[np.nonzero(inside)[0], index[inside]] = solved.source_grad[inside]
            jacobians = [(groups.sample, sample_jacobian),
                         (groups.population, solved.target_grad)]
        divergences = with_jacobians(solved.value, jacobians, device=groups.sample.device)
    return _all_groups(divergences, groups, output_dtype(values, reference)), groups.counts


def group_wasserstein_distances(values: ArrayLike, group_index: ArrayLike, n_groups: int, *,
                                min_count: int = 1, reference: ArrayLike | None = None,
                                ) -> tuple[torch.Tensor | np.ndarray, np.ndarray]:
    r"""Half the exact squared 2-Wasserstein distance of each group's values to the population's.

    .. math:: R_g = \tfrac12 W_2^2(D_g, D),

    the ``blur -> 0`` limit of :func:`group_sinkhorn_divergences`, with the same arguments,
    return values and NaN for groups under ``min_count``. Differentiable in torch.
    """
    groups = _group_samples(values, group_index, n_groups, min_count, reference)
    groups.on_host()  # the finiteness check
    distances = [0.5 * squared_w2_rows(groups.sample[_on(groups.sample, positions)][None],
                                       groups.population)[0] for positions in groups.members]
    return (_all_groups(torch.stack(distances) if distances else None, groups,
                        output_dtype(values, reference)), groups.counts)
