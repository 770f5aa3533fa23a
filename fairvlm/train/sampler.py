"""A seeded batch sampler that puts at least k members of every group in every batch.

The fairness term compares each group's per-pair distribution with the batch's (METHOD.md
section 3), so every group of the attribute must be in every batch. With a plain shuffled
loader a 3% group is missing from about 40% of batches of 32.

How an epoch is built (all draws from ``numpy.random.default_rng([seed, epoch])``):

1. ``n`` batches of exactly ``batch_size`` pairs, ``n`` the fewest for which every pair can
   appear at least once (the same ``n`` every epoch; see :func:`batches_per_epoch`).
2. Each group fills ``k = min_per_group`` slots of every batch by walking through reshuffled
   passes over its members: a group with fewer than ``n * k`` members repeats within the
   epoch (with replacement across batches, never twice in a pass); a larger group's first
   ``n * k`` members of a shuffled pass take its slots and the rest join the pool.
3. The pool (every pair not yet drawn, each once) is shuffled into the remaining slots; slots
   still free are padded with uniform random draws over all pairs.
4. Each batch is shuffled, so every rank's slice mixes groups.

So every pair appears at least once per epoch (DBPM needs each pair's loss every epoch), the
majority roughly once, and minority members as often as their quota needs. Under DDP
``batch_size`` is the global batch (what the fairness term sees after gathering); rank ``r`` of
``world_size`` takes the contiguous slice ``[r * b, (r + 1) * b)`` with
``b = batch_size // world_size``, so ranks hold disjoint, equal slices that together make the
global batch, and every rank yields the same number of batches. Batches are always full:
an incomplete last batch could not keep the guarantee or equal rank slices, so there is no
``drop_last``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler

from fairvlm.errors import ConfigError


class GroupAwareBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset positions; pass it as ``DataLoader(batch_sampler=...)``.

    Parameters
    ----------
    group_codes
        The attribute's group code of every dataset position (train split, after exclusions).
        Each distinct code is one group (an ``unknown`` code included).
    batch_size
        Global batch size B; a multiple of ``world_size``.
    min_per_group
        k, members of every group in every global batch (0 gives plain shuffled batches).
    seed
        Base seed; epoch ``e`` draws from ``default_rng([seed, e])``.
    rank, world_size
        This process's DDP rank and the number of ranks.
    group_names
        Code -> display name, used in error messages.

    Attributes
    ----------
    groups
        The distinct group codes, sorted; group ``g`` of the fairness term is ``groups[g]``.
    group_index
        Group of every dataset position as ``0 .. G-1`` (what the fairness term takes).
    num_batches
        Batches per epoch, the same on every rank (``len(sampler)``).
    """

    def __init__(self, group_codes: Sequence[int] | np.ndarray, batch_size: int, *,
                 min_per_group: int = 4, seed: int = 0, rank: int = 0, world_size: int = 1,
                 group_names: Mapping[int, str] | None = None) -> None:
        codes = np.asarray(group_codes, dtype=np.int64).reshape(-1)
        _check_settings(len(codes), batch_size, min_per_group, seed, rank, world_size)
        self.groups, self.group_index = np.unique(codes, return_inverse=True)
        self._members = [np.flatnonzero(self.group_index == g) for g in range(len(self.groups))]
        sizes = [len(m) for m in self._members]
        _check_groups(self.groups, sizes, batch_size, min_per_group, group_names or {})
        self.batch_size = int(batch_size)
        self.min_per_group = int(min_per_group)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.local_batch_size = self.batch_size // self.world_size
        self.num_batches = batches_per_epoch(sizes, self.batch_size, self.min_per_group)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        start = self.rank * self.local_batch_size
        for batch in self.global_batches(self.epoch):
            yield batch[start:start + self.local_batch_size].tolist()

    def global_batches(self, epoch: int) -> np.ndarray:
        """All ranks' batches of ``epoch``, shape ``[num_batches, batch_size]``."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        n, k = self.num_batches, self.min_per_group
        quota_columns, pool = [], []
        for members in self._members:
            passes = math.ceil(max(n * k, len(members)) / len(members))
            stream = np.concatenate([rng.permutation(members) for _ in range(passes)])
            quota_columns.append(stream[:n * k].reshape(n, k))
            pool.append(stream[n * k:len(members)])
        free = n * (self.batch_size - k * len(self._members))
        remaining = rng.permutation(np.concatenate(pool))
        padding = rng.integers(0, len(self.group_index), size=free - len(remaining))
        fill = np.concatenate([remaining, padding]).reshape(n, -1)
        return rng.permuted(np.concatenate([*quota_columns, fill], axis=1), axis=1)


def batches_per_epoch(group_sizes: Sequence[int], batch_size: int, min_per_group: int) -> int:
    """The fewest full batches that hold ``k`` of every group each and every pair at least once.

    The smallest ``n >= 1`` with ``n * B >= N + sum_g max(0, n * k - N_g)``: the right side
    counts every pair once plus the repeats that groups smaller than their quota ``n * k``
    need. It exists whenever ``G * k <= B``.
    """
    total = sum(group_sizes)
    n = max(1, math.ceil(total / batch_size))
    while n * batch_size < total + sum(max(0, n * min_per_group - s) for s in group_sizes):
        n += 1
    return n


def _check_settings(n_pairs: int, batch_size: int, min_per_group: int, seed: int, rank: int,
                    world_size: int) -> None:
    if n_pairs == 0:
        raise ConfigError("sampler: the training split is empty; expected at least one pair")
    if batch_size < 1 or world_size < 1 or batch_size % world_size:
        raise ConfigError(f"batch_size {batch_size}: expected a positive multiple of the "
                          f"number of processes ({world_size})")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank}: expected 0..{world_size - 1}")
    if min_per_group < 0:
        raise ConfigError(f"min_per_group {min_per_group}: expected an integer >= 0")
    if seed < 0:
        raise ConfigError(f"seed {seed}: expected an integer >= 0")


def _check_groups(groups: np.ndarray, sizes: list[int], batch_size: int, min_per_group: int,
                  names: Mapping[int, str]) -> None:
    if len(groups) * min_per_group > batch_size:
        raise ConfigError(
            f"min_per_group {min_per_group} x {len(groups)} groups does not fit in batch_size "
            f"{batch_size}; expected min_per_group <= {batch_size // len(groups)}"
        )
    for code, size in zip(groups.tolist(), sizes, strict=True):
        if size < min_per_group:
            name = names.get(code, str(code))
            raise ConfigError(
                f"min_per_group {min_per_group} is larger than group {name!r} (code {code}), "
                f"which has {size} training pair(s); lower min_per_group or exclude the group"
            )
