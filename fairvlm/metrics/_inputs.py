"""Checks of the arrays users pass in: one-line errors naming the argument and the fault."""

from __future__ import annotations

import numpy as np

from fairvlm.errors import DataError


def check_labels_and_scores(y_true: object, y_score: object) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(labels as bool, scores as float64)`` after checking shape and values."""
    labels = np.asarray(y_true)
    scores = np.asarray(y_score)
    if labels.ndim != 1 or scores.ndim != 1:
        raise DataError(f"y_true has shape {labels.shape} and y_score {scores.shape}; "
                        "expected one value per pair (1-D arrays)")
    if labels.size != scores.size:
        raise DataError(f"y_true has {labels.size} values and y_score {scores.size}; "
                        "expected one of each per pair")
    if labels.size == 0:
        raise DataError("y_true is empty; expected at least one pair")
    if labels.dtype != bool and not np.isin(labels, (0, 1)).all():
        bad = labels[~np.isin(labels, (0, 1))][0]
        raise DataError(f"y_true holds {bad!r}; expected binary labels 0 or 1")
    try:
        scores = scores.astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"y_score has dtype {scores.dtype}; expected numbers") from None
    not_finite = int(np.count_nonzero(~np.isfinite(scores)))
    if not_finite:
        raise DataError(f"y_score holds {not_finite} NaN or infinite values; expected finite "
                        "scores")
    return labels.astype(bool), scores


def check_codes(codes: object, n_pairs: int) -> np.ndarray:
    """Return integer group codes, one per pair."""
    array = np.asarray(codes)
    if array.shape != (n_pairs,):
        raise DataError(f"codes has shape {array.shape}; expected one group code per pair "
                        f"({n_pairs},)")
    if array.dtype.kind not in "iub":
        as_float = array.astype(np.float64) if array.dtype.kind == "f" else None
        if as_float is None or not np.all(as_float == np.round(as_float)):
            raise DataError(f"codes has dtype {array.dtype} with non-integer values; expected "
                            "integer group codes")
    return array.astype(np.int64)
