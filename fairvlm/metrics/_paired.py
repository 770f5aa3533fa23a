"""``paired_changes``: how a second model's metrics differ from a baseline's on the same pairs,
with paired bootstrap intervals, and whether each change is measurable.

Both models are tallied on the same resamples of the pairs (the indices of
:func:`~fairvlm.metrics._bootstrap.resample_index_blocks` from ``seed``, the ones
:func:`~fairvlm.metrics.audit_attribute` draws), so for every metric ``m``

.. math::
    \\Delta = m(\\text{new}) - m(\\text{base}), \\qquad
    \\Delta^{(b)} = m^{(b)}(\\text{new}) - m^{(b)}(\\text{base}),

and the interval is the percentile interval of the ``Delta^(b)``. Pairing keeps the
correlation between the two models' scores: on the same test pairs most of each model's
sampling noise is shared, so a change well inside either model's own interval can still be
measurable, and overlapping intervals say nothing either way. A change is *measurable* when
its interval excludes 0; it is then an improvement when it goes the metric's better way.

The groups entering each between-group quantity (ES-AUC, gaps) are fixed once, from the
baseline's point estimate, for both models and every resample (they depend on group sizes and
labels only, which the two models share).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fairvlm.metrics._audit import (
    DEFAULT_MIN_N,
    Plan,
    check_settings,
    gap_components,
    grouped_rows,
    levels,
)
from fairvlm.metrics._bootstrap import (
    percentile_interval,
    resample_index_blocks,
    resample_weights,
)
from fairvlm.metrics._inputs import check_labels_and_scores
from fairvlm.metrics._parity import largest_gap
from fairvlm.metrics._tally import SortedPairs, Tallies


@dataclass(frozen=True)
class Change:
    """``delta = new - base`` of one metric with its paired percentile interval.

    ``delta`` is ``None`` when either model leaves the metric undefined; ``ci_low`` and
    ``ci_high`` are ``None`` without a bootstrap. ``n_undefined`` counts resamples left out
    of the interval (a group with a single class in them).
    """

    delta: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n_undefined: int = 0

    @property
    def sign(self) -> int | None:
        """+1 or -1 when the interval excludes 0 (a measurable change up or down), 0 when it
        holds 0, ``None`` when there is no interval to judge by."""
        if self.delta is None or self.ci_low is None or self.ci_high is None:
            return None
        if self.ci_low > 0:
            return 1
        if self.ci_high < 0:
            return -1
        return 0

    @property
    def verdict(self) -> str:
        """``higher`` or ``lower`` (a measurable change), ``within noise``, ``no interval`` or
        ``undefined``."""
        if self.delta is None:
            return "undefined"
        return {None: "no interval", 0: "within noise", 1: "higher", -1: "lower"}[self.sign]

    def to_dict(self) -> dict[str, Any]:
        return {"delta": self.delta, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "sign": self.sign, "n_undefined": self.n_undefined}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        """The inverse of :meth:`to_dict` (``sign`` is derived, not read)."""
        return cls(data.get("delta"), data.get("ci_low"), data.get("ci_high"),
                   int(data.get("n_undefined") or 0))

    def text(self) -> str:
        """``+0.012 [-0.004, +0.027]``, ``+0.012`` without an interval, ``undefined``; with
        four decimals when a nonzero number would round to ``0.000`` (an interval just off
        0 must not read as touching it)."""
        shown = self._shown()
        if len(shown) < 3:
            return shown[0] if shown else "undefined"
        return f"{shown[0]} [{shown[1]}, {shown[2]}]"

    @property
    def delta_text(self) -> str:
        """The delta alone as :meth:`text` writes it (same decimals), ``undefined``."""
        shown = self._shown()
        return shown[0] if shown else "undefined"

    def _shown(self) -> list[str]:
        """``delta`` (then the bounds, when there is an interval) signed, with three decimals,
        or four when a nonzero one would read ``0.000``; empty when undefined."""
        if self.delta is None:
            return []
        numbers = [self.delta] if self.ci_low is None or self.ci_high is None else [
            self.delta, self.ci_low, self.ci_high]
        digits = 4 if any(0 < abs(x) < 5e-4 for x in numbers) else 3
        return [f"{x:+.{digits}f}" for x in numbers]


@dataclass(frozen=True)
class PairedChanges:
    """Changes of the summary metrics (keys as :class:`~fairvlm.metrics.AttributeReport`'s
    fields: ``auc``, ``es_auc``, ``worst_group_auc``, ``accuracy``, ``es_acc``, ``auc_gap``,
    ``dpd``, ``deodds``, ``deodds_fairlearn``, ``tpr_gap``, ``fpr_gap``) and of every shown
    group's AUC (by group name)."""

    summary: Mapping[str, Change]
    group_auc: Mapping[str, Change]
    n_bootstrap: int
    seed: int
    ci_level: float

    def to_dict(self) -> dict[str, Any]:
        return {"n_bootstrap": self.n_bootstrap, "seed": self.seed, "ci_level": self.ci_level,
                "summary": {name: change.to_dict() for name, change in self.summary.items()},
                "group_auc": {name: change.to_dict()
                              for name, change in self.group_auc.items()}}


def paired_changes(
    y_true: np.ndarray,
    base_score: np.ndarray,
    new_score: np.ndarray,
    codes: np.ndarray,
    *,
    group_names: Mapping[int, str],
    attribute: str = "attribute",
    unknown_code: int = -1,
    unknown: str = "group",
    base_threshold: float = 0.5,
    new_threshold: float = 0.5,
    min_n: int = DEFAULT_MIN_N,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> PairedChanges:
    """The change of every metric of :func:`~fairvlm.metrics.audit_attribute` from the
    ``base_score`` model to the ``new_score`` model on the same pairs (see the module
    docstring).

    Parameters are those of :func:`~fairvlm.metrics.audit_attribute`, with one score array
    and one threshold per model; ``seed`` should be the audits' seed so that the resamples
    are theirs.

    Raises
    ------
    DataError
        A score array whose length is not the labels', or the faults ``audit_attribute``
        refuses.
    ConfigError
        A setting ``audit_attribute`` refuses (threshold, min_n, n_bootstrap, ci_level).
    """
    for threshold in (base_threshold, new_threshold):
        check_settings(threshold, "fixed", min_n, n_bootstrap, ci_level)
    labels, base = check_labels_and_scores(y_true, base_score)
    _, new = check_labels_and_scores(y_true, new_score)
    groups, kept = grouped_rows(codes, labels.size, group_names, unknown_code, unknown,
                                attribute)
    labels, row_group, n_groups = labels[kept], groups.row_group[kept], len(groups.names)
    models = (SortedPairs(labels, base[kept], base_threshold, row_group, n_groups),
              SortedPairs(labels, new[kept], new_threshold, row_group, n_groups))
    points = [pairs.point() for pairs in models]
    plan = Plan.from_point(points[0], min_n)
    resampled = None
    if n_bootstrap:
        parts: tuple[list[Tallies], list[Tallies]] = ([], [])
        for indices in resample_index_blocks(labels.size, n_bootstrap, seed):
            for pairs, tallies in zip(models, parts, strict=True):
                tallies.extend(pairs.tally(weights) for weights in
                               resample_weights([indices], pairs.column_of_item))
        resampled = [Tallies.concatenate(tallies) for tallies in parts]
    sampled = _metric_values(resampled, plan) if resampled is not None else {}
    summary = {name: _change(point[0], sampled.get(name), ci_level)
               for name, point in _metric_values(points, plan).items()}
    shown = np.flatnonzero(plan.shown)
    group_points = points[1].group_auc[0, shown] - points[0].group_auc[0, shown]
    group_samples = (resampled[1].group_auc[:, shown] - resampled[0].group_auc[:, shown]
                     if resampled is not None else None)
    group_auc = {groups.names[g]: _change(group_points[k],
                                          None if group_samples is None else group_samples[:, k],
                                          ci_level)
                 for k, g in enumerate(shown)}
    return PairedChanges(summary, group_auc, n_bootstrap, seed, ci_level)


def _metric_values(tallies: list[Tallies], plan: Plan) -> dict[str, np.ndarray]:
    """``m(new) - m(base)`` per row of the tallies, for every summary metric."""
    base_levels, new_levels = (levels(t, plan) for t in tallies)
    base_gaps, new_gaps = (gap_components(t, plan) for t in tallies)
    changes = {name: new_levels[name] - base_levels[name] for name in base_levels}
    for name in base_gaps:
        changes[name] = largest_gap(new_gaps[name]) - largest_gap(base_gaps[name])
    return changes


def _change(point: float, samples: np.ndarray | None, ci_level: float) -> Change:
    """A :class:`Change` from a point difference (NaN = undefined) and its resampled ones."""
    if not np.isfinite(point):
        return Change(None)
    if samples is None:
        return Change(float(point))
    low, high, n_undefined = percentile_interval(samples, ci_level)
    return Change(float(point), low, high, n_undefined)
