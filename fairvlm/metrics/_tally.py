"""Per-resample tallies: overall and per-group AUC and confusion counts under sample weights.

The point estimate is the tally under weights of one (a single row of ones); each bootstrap
resample is a row of draw counts. Both go through the same code, so the interval and the value
it surrounds can never disagree about what is measured.

With the pairs sorted by score, everything comes from two arrays per segment (all pairs, or
one group): the running weight totals ``C`` and the weight columns of the positives. The AUC
is their midrank sum; the pairs predicted positive (``score >= threshold``) are a suffix of
the sorted columns, so ``selected = C_end - C_first_selected`` and the true positives are a
suffix of the positive columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fairvlm.metrics._auc import auc_from_cumulative, cumulative_weights, tie_blocks

# Columns of the count arrays: weighted sums over the pairs of a group.
COUNT_FIELDS = ("n", "positives", "selected", "true_positives", "false_positives", "correct")
N, POSITIVES, SELECTED, TRUE_POSITIVES, FALSE_POSITIVES, CORRECT = range(len(COUNT_FIELDS))


@dataclass(frozen=True)
class Tallies:
    """Tallies for ``R`` weightings of the pairs.

    ``auc`` ``(R,)`` and ``counts`` ``(R, 6)`` over all pairs; ``group_auc`` ``(R, G)`` and
    ``group_counts`` ``(R, G, 6)`` per group; count columns as in ``COUNT_FIELDS``.
    """

    auc: np.ndarray
    counts: np.ndarray
    group_auc: np.ndarray
    group_counts: np.ndarray

    @staticmethod
    def concatenate(parts: list[Tallies]) -> Tallies:
        """Stack the rows of several tallies."""
        return Tallies(*(np.concatenate(arrays) for arrays in zip(*(
            (p.auc, p.counts, p.group_auc, p.group_counts) for p in parts), strict=True)))


@dataclass(frozen=True)
class _Segment:
    """Columns (in score order) of one segment and the positions its tallies need."""

    columns: np.ndarray | None  # None: every column
    positives: np.ndarray  # positions of the positive pairs within the segment
    positive_block_start: np.ndarray
    positive_block_end: np.ndarray
    first_selected: int  # first position with score >= threshold
    first_selected_positive: int  # same, counted among the positives

    @staticmethod
    def build(columns: np.ndarray | None, labels: np.ndarray, scores: np.ndarray,
              threshold: float) -> _Segment:
        if columns is not None:
            labels, scores = labels[columns], scores[columns]
        block_start, block_end = tie_blocks(scores)
        positives = np.flatnonzero(labels)
        return _Segment(columns, positives, block_start[positives], block_end[positives],
                        int(np.searchsorted(scores, threshold, side="left")),
                        int(np.searchsorted(scores[positives], threshold, side="left")))

    def tally(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(auc, counts)`` of this segment under ``(R, m)`` weights over all columns."""
        if self.columns is not None:
            weights = weights[:, self.columns]
        cumulative = cumulative_weights(weights)
        positive_weights = weights[:, self.positives]
        auc = auc_from_cumulative(cumulative, positive_weights, self.positive_block_start,
                                  self.positive_block_end)
        n = cumulative[:, -1]
        positives = positive_weights.sum(axis=1)
        selected = n - cumulative[:, self.first_selected]
        true_positives = positive_weights[:, self.first_selected_positive:].sum(axis=1)
        false_positives = selected - true_positives
        correct = true_positives + (n - positives - false_positives)
        counts = np.stack([n, positives, selected, true_positives, false_positives, correct],
                          axis=1)
        return auc, counts


class SortedPairs:
    """Labels, scores and groups of the pairs, held in ascending score order.

    Parameters
    ----------
    labels
        Boolean truth per pair.
    scores
        Score per pair (higher means more likely positive).
    threshold
        Pairs with ``score >= threshold`` are predicted positive.
    row_group
        Group position per pair, ``0 <= row_group < n_groups``.
    n_groups
        Number of groups (groups without pairs are allowed).
    """

    def __init__(self, labels: np.ndarray, scores: np.ndarray, threshold: float,
                 row_group: np.ndarray, n_groups: int) -> None:
        order = np.argsort(scores, kind="stable")
        self.column_of_item = np.empty_like(order)
        self.column_of_item[order] = np.arange(order.size)
        sorted_labels, sorted_scores = labels[order], scores[order]
        sorted_groups = row_group[order]
        self._all = _Segment.build(None, sorted_labels, sorted_scores, threshold)
        self._groups = [_Segment.build(np.flatnonzero(sorted_groups == g), sorted_labels,
                                       sorted_scores, threshold) for g in range(n_groups)]

    @property
    def size(self) -> int:
        return self.column_of_item.size

    def tally(self, weights: np.ndarray) -> Tallies:
        """Tallies under ``(R, m)`` integer weights whose columns follow ``column_of_item``."""
        auc, counts = self._all.tally(weights)
        per_group = [segment.tally(weights) for segment in self._groups]
        return Tallies(
            auc=auc,
            counts=counts.astype(np.float64),
            group_auc=np.stack([g_auc for g_auc, _ in per_group], axis=1),
            group_counts=np.stack([g_counts for _, g_counts in per_group],
                                  axis=1).astype(np.float64),
        )

    def point(self) -> Tallies:
        """Tallies of the data as observed (every pair weighted once)."""
        return self.tally(np.ones((1, self.size), dtype=np.int64))
