"""ROC AUC by rank sums over tie blocks, for one score vector or many resample weightings at once.

The area under the ROC curve is the probability that a random positive scores above a random
negative, ties counting one half (the Mann-Whitney U statistic over ``P * N``):

    AUC = (1 / (P N)) * sum_{i: y_i = 1} sum_{j: y_j = 0} ( [s_i > s_j] + 0.5 [s_i = s_j] ).

It is computed from the rank sum of the positives with midranks for ties, written with
cumulative sums over the pairs sorted once by score. A bootstrap resample only changes how
often each pair is drawn, so a matrix of draw counts (one row per resample) gives every
resample's AUC in a few vectorised passes, without sorting again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RocCurve:
    """Points of a ROC curve, ordered by decreasing threshold.

    ``fpr[k]`` and ``tpr[k]`` are the rates of the rule ``score >= thresholds[k]``; the first
    point is ``(0, 0)`` at threshold ``+inf`` (as in ``sklearn.metrics.roc_curve`` with
    ``drop_intermediate=False``).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    def to_dict(self) -> dict[str, list[float | None]]:
        """Plain lists; the infinite first threshold and undefined rates become ``None``."""
        return {name: [float(v) if np.isfinite(v) else None for v in values]
                for name, values in (("fpr", self.fpr), ("tpr", self.tpr),
                                     ("thresholds", self.thresholds))}


def tie_blocks(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per position of an ascending score vector: the first position of its block of equal
    scores, and one past the block's last position."""
    is_start = np.ones(sorted_scores.size, dtype=bool)
    is_start[1:] = sorted_scores[1:] != sorted_scores[:-1]
    starts = np.flatnonzero(is_start)
    lengths = np.diff(np.append(starts, sorted_scores.size))
    return np.repeat(starts, lengths), np.repeat(starts + lengths, lengths)


def cumulative_weights(weights: np.ndarray) -> np.ndarray:
    """``(R, m + 1)`` running totals with a leading 0: column ``j`` sums the first ``j``."""
    cumulative = np.zeros((weights.shape[0], weights.shape[1] + 1), dtype=weights.dtype)
    np.cumsum(weights, axis=1, out=cumulative[:, 1:])
    return cumulative


def auc_from_cumulative(cumulative: np.ndarray, positive_weights: np.ndarray,
                        positive_block_start: np.ndarray,
                        positive_block_end: np.ndarray) -> np.ndarray:
    """AUC of each row of sample weights over pairs sorted by ascending score.

    Weighted midrank form of the Mann-Whitney statistic: the copies of the pairs in a tie
    block share the midrank ``r = (C_start + C_end + 1) / 2``, with ``C`` the running weight
    total before the block's first and after its last pair, and

        AUC = (R_1 - P (P + 1) / 2) / (P N),   R_1 = sum_{i: y_i = 1} w_i r_{block(i)},

    with ``P`` and ``N`` the positive and negative weight. With integer weights (bootstrap
    counts, or ones) every term is an integer after doubling, so the result is exact.

    Parameters
    ----------
    cumulative
        :func:`cumulative_weights` of the ``(R, m)`` weights, columns in ascending score order.
    positive_weights
        ``(R, p)`` the weight columns of the positive pairs.
    positive_block_start, positive_block_end
        For each positive pair, :func:`tie_blocks` of its column.

    Returns
    -------
    numpy.ndarray
        ``(R,)`` AUC per row; NaN where a row has no positive or no negative weight.
    """
    positives = positive_weights.sum(axis=1)
    negatives = cumulative[:, -1] - positives
    twice_rank_sum = (np.einsum("rk,rk->r", positive_weights, cumulative[:, positive_block_start])
                      + np.einsum("rk,rk->r", positive_weights, cumulative[:, positive_block_end])
                      + positives)
    twice_u_statistic = twice_rank_sum - positives * (positives + 1)
    pairs = positives * negatives
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, twice_u_statistic / (2.0 * pairs), np.nan)


def weighted_auc(weights: np.ndarray, y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AUC under each row of ``(R, n)`` sample weights (a row of counts = a resample)."""
    labels = np.asarray(y_true).astype(bool)
    scores = np.asarray(y_score, dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    block_start, block_end = tie_blocks(scores[order])
    positive_columns = np.flatnonzero(labels[order])
    sorted_weights = weights[:, order]
    return auc_from_cumulative(cumulative_weights(sorted_weights),
                               sorted_weights[:, positive_columns],
                               block_start[positive_columns], block_end[positive_columns])


def roc_auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve, equal to ``sklearn.metrics.roc_auc_score``.

    Ties count one half (midranks). Returns NaN, rather than raising, when ``y_true`` holds a
    single class, so callers can report the value as undefined.
    """
    size = np.asarray(y_score).size
    return float(weighted_auc(np.ones((1, size), dtype=np.int64), y_true, y_score)[0])


def roc_counts(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, ...]:
    """True and false positive counts of ``score >= t`` for every distinct score ``t``.

    Returns ``(thresholds, true_positives, false_positives)``, thresholds decreasing.
    """
    labels = np.asarray(y_true).astype(bool)
    scores = np.asarray(y_score, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    if scores.size == 0:
        return sorted_scores, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    last_of_block = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_block]
    false_positives = (last_of_block + 1) - true_positives
    return sorted_scores[last_of_block], true_positives, false_positives


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> RocCurve:
    """ROC curve points: ``tpr = TP / P`` and ``fpr = FP / N`` at every distinct score.

    Equal to ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``. A rate whose class is
    absent is NaN.
    """
    thresholds, true_positives, false_positives = roc_counts(y_true, y_score)
    true_positives = np.r_[0, true_positives]
    false_positives = np.r_[0, false_positives]
    return RocCurve(
        fpr=_rate(false_positives, false_positives[-1]),
        tpr=_rate(true_positives, true_positives[-1]),
        thresholds=np.r_[np.inf, thresholds],
    )


def _rate(counts: np.ndarray, total: int) -> np.ndarray:
    return counts / total if total else np.full(counts.shape, np.nan)
