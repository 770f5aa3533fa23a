"""Decision thresholds chosen on a validation set."""

from __future__ import annotations

import numpy as np

from fairvlm.errors import ConfigError, DataError
from fairvlm.metrics._auc import roc_counts
from fairvlm.metrics._inputs import check_labels_and_scores

THRESHOLD_METHODS = ("fixed", "youden", "f1")
# How each threshold method reads in the app, the summaries and the reports.
THRESHOLD_LABELS: dict[str, str] = {"fixed": "0.5 (fixed)", "youden": "Youden's J on validation",
                                    "f1": "best F1 on validation"}


def threshold_label(method: str) -> str:
    """A threshold method (:data:`THRESHOLD_METHODS`) in words: ``youden`` reads ``Youden's J
    on validation``; an unknown key reads as itself."""
    return THRESHOLD_LABELS.get(method, method)


def choose_threshold(y_true: np.ndarray, y_score: np.ndarray, *, method: str = "youden") -> float:
    """The threshold ``t`` (predict positive when ``score >= t``) that maximises a criterion.

    Parameters
    ----------
    y_true, y_score
        Validation labels (0/1) and scores.
    method
        ``"youden"``: Youden's ``J = TPR - FPR``; ``"f1"``: ``F1 = 2 TP / (2 TP + FP + FN)``.

    Returns
    -------
    float
        Candidates are the distinct validation scores. The best one (the highest threshold
        among ties) is returned as the midpoint between it and the next lower distinct score,
        which gives the same validation predictions and does not sit on a validation value.

    Raises
    ------
    DataError
        When the validation labels hold a single class (neither criterion is defined).
    """
    if method not in THRESHOLD_METHODS[1:]:
        raise ConfigError(f"threshold method {method!r}: expected one of "
                          f"{', '.join(THRESHOLD_METHODS[1:])}")
    labels, scores = check_labels_and_scores(y_true, y_score)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise DataError(f"choose_threshold: the validation labels hold only class "
                        f"{int(positives > 0)}; expected both classes to choose a threshold")
    thresholds, true_positives, false_positives = roc_counts(labels, scores)
    if method == "youden":
        criterion = true_positives / positives - false_positives / negatives
    else:
        criterion = 2 * true_positives / (true_positives + false_positives + positives)
    best = int(np.argmax(criterion))
    if best + 1 < thresholds.size:
        midpoint = (thresholds[best] + thresholds[best + 1]) / 2.0
        if midpoint > thresholds[best + 1]:  # adjacent floats have no midpoint between them
            return float(midpoint)
    return float(thresholds[best])
