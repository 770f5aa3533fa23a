"""Group fairness metrics of binary scores: numpy in, plain data out (no torch).

Public face:

- :func:`audit_attribute`: overall and per-group AUC, ES-AUC, worst-group AUC, AUC gap,
  accuracy and ES-Acc, DPD and DEOdds, with seeded, vectorised percentile bootstrap intervals;
  returns an :class:`AttributeReport` (``to_dict()``, ``to_frame()``).
- :func:`paired_changes`: a second model's change on every metric from a baseline's, on the
  same pairs, with paired bootstrap intervals (:class:`Change`: measurable or within noise).
- :func:`summarize`: the report in plain language.
- :func:`choose_threshold`: Youden's J or best F1 on a validation set.
- :func:`intersect_groups`: combine attributes into groups such as ``"Black & Female"``.
- :func:`roc_auc`, :func:`roc_curve`, :func:`equity_scaled`: the building blocks.
"""

from fairvlm.metrics._auc import RocCurve, roc_auc, roc_curve
from fairvlm.metrics._audit import DEFAULT_MIN_N, audit_attribute
from fairvlm.metrics._groups import intersect_groups
from fairvlm.metrics._paired import Change, PairedChanges, paired_changes
from fairvlm.metrics._parity import equity_scaled
from fairvlm.metrics._report import AttributeReport, Estimate, GroupReport
from fairvlm.metrics._summary import summarize
from fairvlm.metrics._thresholds import choose_threshold

__all__ = [
    "DEFAULT_MIN_N",
    "AttributeReport",
    "Change",
    "Estimate",
    "GroupReport",
    "PairedChanges",
    "RocCurve",
    "audit_attribute",
    "choose_threshold",
    "equity_scaled",
    "intersect_groups",
    "paired_changes",
    "roc_auc",
    "roc_curve",
    "summarize",
]
