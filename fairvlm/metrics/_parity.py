"""Between-group comparisons: group rates, gaps (AUC gap, DPD, DEOdds) and equity scaling.

All functions work on arrays with a leading resample axis ``R`` and a group axis ``G``, so the
point estimate (``R = 1``) and every bootstrap resample are computed the same way. A rate whose
denominator is zero is NaN (undefined), never 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fairvlm.metrics._tally import CORRECT, FALSE_POSITIVES, POSITIVES, SELECTED, TRUE_POSITIVES, N


def group_rates(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Rates from weighted counts (last axis as in ``COUNT_FIELDS``).

    ``selection_rate = P(yhat=1) = selected / n``; ``tpr = P(yhat=1 | y=1) = TP / positives``;
    ``fpr = P(yhat=1 | y=0) = FP / (n - positives)``; ``accuracy = correct / n``.
    """
    n, positives = counts[..., N], counts[..., POSITIVES]
    return {
        "selection_rate": _ratio(counts[..., SELECTED], n),
        "tpr": _ratio(counts[..., TRUE_POSITIVES], positives),
        "fpr": _ratio(counts[..., FALSE_POSITIVES], n - positives),
        "accuracy": _ratio(counts[..., CORRECT], n),
    }


Component = tuple[np.ndarray, np.ndarray]
"""Values ``(R, G)`` of one group rate and the ``(G,)`` mask of groups the gap compares."""


def largest_gap(components: Sequence[Component]) -> np.ndarray:
    """``max_c (max_{g in c} v_g - min_{g in c} v_g)`` per resample.

    One component gives a plain gap (``DPD``: selection rates; ``AUC gap``: group AUCs); two
    give ``DEOdds = max(TPR gap, FPR gap)``. A component with fewer than two member groups
    is skipped (its gap is undefined); with none left the result is NaN. A member's NaN value
    (a rate undefined in some resample) makes that resample's result NaN.
    """
    gaps = [values[:, members].max(axis=1) - values[:, members].min(axis=1)
            for values, members in components if np.count_nonzero(members) >= 2]
    if not gaps:
        return np.full(components[0][0].shape[0], np.nan)
    return np.maximum.reduce(gaps)


def deviations(resampled: Sequence[Component], point: Sequence[Component]) -> list[Component]:
    """Each component's resampled values minus its point values (for the gap's noise)."""
    return [(values - point_values, members)
            for (values, members), (point_values, _) in zip(resampled, point, strict=True)]


def undefined_as_zero(rate: np.ndarray) -> np.ndarray:
    """fairlearn 0.15's convention: an undefined TPR or FPR counts as 0.

    fairlearn derives both from ``confusion_matrix(normalize="true")``, whose empty rows are
    0; kept so users can compare with numbers produced by fairlearn.
    """
    return np.nan_to_num(rate, nan=0.0)


def equity_scaled(overall: np.ndarray | float, by_group: np.ndarray) -> np.ndarray:
    """Equity-scaled metric (FairCLIP): ``M / (1 + sum_g |M_g - M|)``.

    Parameters
    ----------
    overall
        ``M`` per resample, shape ``(R,)`` (or a scalar).
    by_group
        ``M_g`` per resample and group, shape ``(R, G)`` (or ``(G,)``). NaN propagates.
    """
    overall = np.asarray(overall, dtype=np.float64)
    by_group = np.asarray(by_group, dtype=np.float64)
    deviation = np.abs(by_group - overall[..., None]).sum(axis=-1)
    return overall / (1.0 + deviation)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)
