"""Bootstrap: one seeded index matrix, turned into per-resample draw counts, and intervals.

Intervals: percentile intervals for levels (AUCs, accuracy, ES-AUC), and for between-group
gaps the simultaneous interval of :func:`gap_interval`, which can include 0.

Resampling scheme: plain iid resampling of pairs (the standard percentile bootstrap, and what
fairlearn's ``MetricFrame(n_boot=...)`` does). Each resample draws ``n`` pairs with
replacement from all ``n``; group sizes vary between resamples as they would between data sets
drawn from the same population, so a group's CI includes the uncertainty of its size. A small
group can lose all its positives in some resamples: its AUC is then undefined there, those
resamples are left out of its interval, and the report says how many.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

_MAX_CHUNK_ELEMENTS = 2_000_000  # count-matrix entries handled at once (16 MB of int64)


def resample_index_blocks(n_items: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yield the ``(n_resamples, n_items)`` matrix of row indices drawn with replacement, in
    blocks of consecutive resamples (about ``_MAX_CHUNK_ELEMENTS`` entries each).

    Row ``b`` of the stacked blocks is resample ``b``: ``data[indices[b]]``. The blocks come from
    one generator seeded with ``seed``, so the draws are fully determined by the arguments and
    every attribute audited with the same seed sees the same resamples; memory stays at one
    block (16 MB at most) whatever ``n_items``.
    """
    rng = np.random.default_rng(seed)
    dtype = np.int32 if n_items <= np.iinfo(np.int32).max else np.int64
    rows = max(1, _MAX_CHUNK_ELEMENTS // max(n_items, 1))
    for start in range(0, n_resamples, rows):
        yield rng.integers(0, n_items, size=(min(rows, n_resamples - start), n_items),
                           dtype=dtype)


def draw_resample_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """The whole index matrix of :func:`resample_index_blocks` (for checks and small data)."""
    return np.concatenate(list(resample_index_blocks(n_items, n_resamples, seed)))


def resample_weights(
    index_blocks: Iterable[np.ndarray], column_of_item: np.ndarray
) -> Iterator[np.ndarray]:
    """Yield, for each block of resample indices, its rows of the draw-count matrix.

    ``counts[b, column_of_item[i]]`` is how many times resample ``b`` drew item ``i``. Mapping
    items to columns lets the caller ask for the counts already in its own (sorted) order.
    """
    for indices in index_blocks:
        rows, n_items = indices.shape
        block = column_of_item[indices]
        block += (np.arange(rows) * n_items)[:, None]
        counts = np.bincount(block.ravel(), minlength=rows * n_items)
        yield counts.reshape(rows, n_items)


def percentile_interval(
    samples: np.ndarray, level: float
) -> tuple[float | None, float | None, int]:
    """Percentile interval ``(q_{a/2}, q_{1-a/2})`` of the defined samples, ``a = 1 - level``.

    Returns ``(low, high, n_undefined)``; ``low`` and ``high`` are ``None`` when no sample is
    defined. Quantiles use numpy's default linear interpolation.
    """
    defined = samples[np.isfinite(samples)]
    n_undefined = int(samples.size - defined.size)
    if defined.size == 0:
        return None, None, n_undefined
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(defined, [tail, 1.0 - tail])
    return float(low), float(high), n_undefined


def gap_interval(
    gap: float, noise: np.ndarray, level: float
) -> tuple[float | None, float | None, int]:
    """Simultaneous bootstrap interval for a between-group gap ``max_g v_g - min_g v_g``.

    With estimates ``v_g = theta_g + e_g``, the observed gap and the true gap differ by at most
    the range of the errors, ``max_g e_g - min_g e_g``. Its distribution is estimated by the
    range of ``v_g^(b) - v_g`` over the resamples (``noise``); with ``q`` its ``level``
    quantile, ``[max(0, gap - q), gap + q]`` covers the true gap with probability about
    ``level``. Unlike the percentile interval of the recomputed max - min, which can never
    reach 0, this interval includes 0 when the gap is within sampling noise.

    Returns ``(low, high, n_undefined)`` as :func:`percentile_interval`.
    """
    defined = noise[np.isfinite(noise)]
    n_undefined = int(noise.size - defined.size)
    if defined.size == 0:
        return None, None, n_undefined
    margin = float(np.quantile(defined, level))
    return max(0.0, float(gap) - margin), float(gap) + margin, n_undefined
