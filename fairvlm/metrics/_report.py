"""Result types of an attribute audit: plain data with ``to_dict()`` and ``to_frame()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fairvlm.metrics._auc import RocCurve


@dataclass(frozen=True)
class Estimate:
    """A number with its bootstrap percentile interval.

    ``value`` is ``None`` when the quantity is undefined; ``note`` then says why. ``ci_low`` and
    ``ci_high`` are ``None`` without a bootstrap or when no resample defines the quantity; a
    note also records resamples left out of the interval and any convention used.
    """

    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "note": self.note}


@dataclass(frozen=True)
class GroupReport:
    """Metrics of one group of an attribute.

    ``shown`` is False for a group hidden from the summary (n below ``min_n``, or no pairs);
    its metrics are then ``None`` and ``note`` says why. Rates are at the report's threshold:
    ``tpr = P(yhat=1 | y=1)``, ``fpr = P(yhat=1 | y=0)``, ``selection_rate = P(yhat=1)``.
    """

    name: str
    code: int
    n: int
    positives: int
    shown: bool
    auc: Estimate
    tpr: float | None
    fpr: float | None
    selection_rate: float | None
    accuracy: float | None
    note: str = ""
    roc: RocCurve | None = field(default=None, repr=False)

    def to_dict(self, *, include_roc: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name, "code": self.code, "n": self.n, "positives": self.positives,
            "shown": self.shown, "auc": self.auc.to_dict(), "tpr": self.tpr, "fpr": self.fpr,
            "selection_rate": self.selection_rate, "accuracy": self.accuracy, "note": self.note,
        }
        if include_roc:
            data["roc"] = self.roc.to_dict() if self.roc is not None else None
        return data


@dataclass(frozen=True)
class AttributeReport:
    """Fairness audit of one attribute (or an intersection of several).

    Summary quantities (each an :class:`Estimate`), computed over the groups *shown*
    (``n >= min_n``) whose value is defined; ``notes`` lists any group left out:

    - ``auc``: overall AUC over all audited pairs (hidden groups included).
    - ``es_auc``: ``AUC / (1 + sum_g |AUC_g - AUC|)``.
    - ``worst_group_auc``: ``min_g AUC_g`` (the group is ``worst_group``; the best is
      ``best_group``).
    - ``auc_gap``: ``max_g AUC_g - min_g AUC_g``.
    - ``accuracy`` and ``es_acc = Acc / (1 + sum_g |Acc_g - Acc|)`` at ``threshold``.
    - ``dpd = max_g P(yhat=1 | g) - min_g P(yhat=1 | g)``.
    - ``deodds = max(TPR gap, FPR gap)``, each gap (``tpr_gap``, ``fpr_gap``) over the groups
      where the rate is defined; ``deodds_fairlearn`` is fairlearn 0.15's number, which
      counts an undefined rate as 0 (the two agree when every rate is defined).

    Intervals: percentile bootstrap for the levels (AUC, ES-AUC, worst-group AUC, accuracy,
    ES-Acc, group AUCs). The gaps (AUC gap, DPD, DEOdds, TPR/FPR gaps) use the simultaneous
    bootstrap interval ``[max(0, gap - q), gap + q]`` of ``gap_interval``, so a gap whose
    interval excludes 0 exceeds bootstrap noise (the percentile interval of a max - min
    never reaches 0 and could not tell).
    """

    attribute: str
    n: int
    positives: int
    threshold: float
    threshold_method: str
    settings: dict[str, Any]
    auc: Estimate
    es_auc: Estimate
    worst_group: str | None
    best_group: str | None
    worst_group_auc: Estimate
    auc_gap: Estimate
    accuracy: Estimate
    es_acc: Estimate
    dpd: Estimate
    deodds: Estimate
    deodds_fairlearn: Estimate
    tpr_gap: Estimate
    fpr_gap: Estimate
    groups: tuple[GroupReport, ...]
    notes: tuple[str, ...] = ()

    _ESTIMATES = ("auc", "es_auc", "worst_group_auc", "auc_gap", "accuracy", "es_acc", "dpd",
                  "deodds", "deodds_fairlearn", "tpr_gap", "fpr_gap")

    def group(self, name: str) -> GroupReport:
        """The group called ``name``."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def to_dict(self, *, include_roc: bool = False) -> dict[str, Any]:
        """Plain JSON-able data; undefined values are ``None``."""
        return {
            "attribute": self.attribute, "n": self.n, "positives": self.positives,
            "threshold": {"value": self.threshold, "method": self.threshold_method},
            "settings": dict(self.settings),
            **{name: getattr(self, name).to_dict() for name in self._ESTIMATES},
            "worst_group": self.worst_group, "best_group": self.best_group,
            "groups": [g.to_dict(include_roc=include_roc) for g in self.groups],
            "notes": list(self.notes),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per group: n, positives, AUC with CI, rates at the threshold, note."""
        rows = [{
            "group": g.name, "n": g.n, "positives": g.positives, "shown": g.shown,
            "auc": g.auc.value, "ci_low": g.auc.ci_low, "ci_high": g.auc.ci_high,
            "tpr": g.tpr, "fpr": g.fpr, "selection_rate": g.selection_rate,
            "accuracy": g.accuracy,
            "note": "; ".join(dict.fromkeys(filter(None, (g.note, g.auc.note)))),
        } for g in self.groups]
        frame = pd.DataFrame(rows)
        numeric = ["auc", "ci_low", "ci_high", "tpr", "fpr", "selection_rate", "accuracy"]
        frame[numeric] = frame[numeric].astype("float64")
        return frame
