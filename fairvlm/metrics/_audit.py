"""``audit_attribute``: every fairness number of one attribute, with bootstrap intervals."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from fairvlm.errors import ConfigError, DataError
from fairvlm.metrics._auc import roc_curve
from fairvlm.metrics._bootstrap import (
    gap_interval,
    percentile_interval,
    resample_index_blocks,
    resample_weights,
)
from fairvlm.metrics._groups import GroupIndex, index_groups
from fairvlm.metrics._inputs import check_codes, check_labels_and_scores
from fairvlm.metrics._parity import (
    Component,
    deviations,
    equity_scaled,
    group_rates,
    largest_gap,
    undefined_as_zero,
)
from fairvlm.metrics._report import AttributeReport, Estimate, GroupReport
from fairvlm.metrics._tally import POSITIVES, N, SortedPairs, Tallies
from fairvlm.metrics._thresholds import THRESHOLD_METHODS

DEFAULT_MIN_N = 30
RESAMPLING = "iid pairs (plain percentile bootstrap; group sizes vary between resamples)"


def audit_attribute(
    y_true: np.ndarray,
    y_score: np.ndarray,
    codes: np.ndarray,
    *,
    group_names: Mapping[int, str],
    attribute: str = "attribute",
    unknown_code: int = -1,
    unknown: str = "group",
    threshold: float = 0.5,
    threshold_method: str = "fixed",
    min_n: int = DEFAULT_MIN_N,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci_level: float = 0.95,
) -> AttributeReport:
    """Audit the group fairness of scores for one attribute.

    Parameters
    ----------
    y_true
        0/1 label per pair.
    y_score
        Score per pair, higher meaning more likely positive (a probability for the threshold
        metrics to be meaningful).
    codes
        Integer group code per pair (see :func:`intersect_groups` for intersections).
    group_names
        ``code -> name``; every listed code is reported, even with no pairs.
    attribute
        Name of the attribute, for the report.
    unknown_code, unknown
        Rows with ``unknown_code`` are their own group ``"unknown"`` (``"group"``; it then
        counts like any other group in ES-AUC and the gaps) or dropped (``"exclude"``); a note
        records which and how many.
    threshold, threshold_method
        Predict positive when ``score >= threshold``. ``threshold_method`` records where the
        value came from: ``"fixed"``, or ``"youden"`` / ``"f1"`` when it was chosen on a
        validation set with :func:`choose_threshold`.
    min_n
        Groups with fewer pairs are hidden from the summary: their metrics are ``None`` with
        a reason, and every between-group quantity uses the groups shown (a note names the
        hidden ones).
    n_bootstrap, seed, ci_level
        Percentile bootstrap over pairs (iid, the same ``n_bootstrap`` resamples for every
        quantity, drawn once from ``seed``); 0 skips the intervals.

    Returns
    -------
    AttributeReport
        See :class:`AttributeReport` for the formulas.
    """
    check_settings(threshold, threshold_method, min_n, n_bootstrap, ci_level)
    labels, scores = check_labels_and_scores(y_true, y_score)
    groups, kept = grouped_rows(codes, labels.size, group_names, unknown_code, unknown,
                                attribute)
    labels, scores, row_group = labels[kept], scores[kept], groups.row_group[kept]
    pairs = SortedPairs(labels, scores, threshold, row_group, len(groups.names))
    point = pairs.point()
    plan = Plan.from_point(point, min_n)
    resamples = None
    if n_bootstrap:
        blocks = resample_index_blocks(labels.size, n_bootstrap, seed)
        resamples = Tallies.concatenate(
            [pairs.tally(w) for w in resample_weights(blocks, pairs.column_of_item)])
    estimates = _summary_estimates(point, resamples, plan, groups, ci_level)
    group_reports = _group_reports(point, resamples, plan, groups, labels, scores, row_group,
                                   min_n, ci_level)
    return AttributeReport(
        attribute=attribute,
        n=int(labels.size),
        positives=int(labels.sum()),
        threshold=float(threshold),
        threshold_method=threshold_method,
        settings={"min_n": min_n, "unknown": unknown, "unknown_code": unknown_code,
                  "n_bootstrap": n_bootstrap, "seed": seed, "ci_level": ci_level,
                  "resampling": RESAMPLING},
        worst_group=groups.names[plan.worst] if plan.worst is not None else None,
        best_group=groups.names[plan.best] if plan.best is not None else None,
        groups=group_reports,
        notes=(*groups.notes, *_summary_notes(plan, groups, min_n)),
        **estimates,
    )


def grouped_rows(codes: np.ndarray, n_pairs: int, group_names: Mapping[int, str],
                 unknown_code: int, unknown: str, attribute: str
                 ) -> tuple[GroupIndex, np.ndarray]:
    """The groups of the pairs (:func:`index_groups`) and the mask of pairs kept (those not in
    an excluded unknown group); ``DataError`` when no pair is kept."""
    groups = index_groups(check_codes(codes, n_pairs), group_names,
                          unknown_code=unknown_code, unknown=unknown)
    kept = groups.row_group >= 0
    if not kept.any():
        raise DataError(f"{attribute}: every pair has the unknown code {unknown_code} and "
                        "unknown='exclude'; expected some pairs with a known group")
    return groups, kept


@dataclass(frozen=True)
class Plan:
    """Which groups enter each summary quantity, fixed by the point estimate."""

    n: np.ndarray
    positives: np.ndarray
    shown: np.ndarray
    auc_members: np.ndarray
    tpr_members: np.ndarray
    fpr_members: np.ndarray
    worst: int | None
    best: int | None

    @staticmethod
    def from_point(point: Tallies, min_n: int) -> Plan:
        n = point.group_counts[0, :, N].astype(np.int64)
        positives = point.group_counts[0, :, POSITIVES].astype(np.int64)
        shown = n >= max(min_n, 1)
        auc_members = shown & np.isfinite(point.group_auc[0])
        worst = best = None
        if np.count_nonzero(auc_members) >= 2:
            member_auc = np.where(auc_members, point.group_auc[0], np.nan)
            worst, best = int(np.nanargmin(member_auc)), int(np.nanargmax(member_auc))
        return Plan(n, positives, shown, auc_members, tpr_members=shown & (positives > 0),
                     fpr_members=shown & (n - positives > 0), worst=worst, best=best)


def levels(tallies: Tallies, plan: Plan) -> dict[str, np.ndarray]:
    """Summary quantities that are levels (not gaps), one value per row (NaN = undefined)."""
    accuracy = group_rates(tallies.counts)["accuracy"]
    group_accuracy = group_rates(tallies.group_counts)["accuracy"]
    member_auc = tallies.group_auc[:, plan.auc_members]
    undefined = np.full(tallies.auc.shape, np.nan)
    between_auc = member_auc.shape[1] >= 2
    return {
        "auc": tallies.auc,
        "es_auc": equity_scaled(tallies.auc, member_auc) if between_auc else undefined,
        "worst_group_auc": member_auc.min(axis=1) if between_auc else undefined,
        "accuracy": accuracy,
        "es_acc": (equity_scaled(accuracy, group_accuracy[:, plan.shown])
                   if np.count_nonzero(plan.shown) >= 2 else undefined),
    }


def gap_components(tallies: Tallies, plan: Plan) -> dict[str, list[Component]]:
    """The group values and member groups that each gap compares."""
    rates = group_rates(tallies.group_counts)
    tpr, fpr = (rates["tpr"], plan.tpr_members), (rates["fpr"], plan.fpr_members)
    return {
        "auc_gap": [(tallies.group_auc, plan.auc_members)],
        "dpd": [(rates["selection_rate"], plan.shown)],
        "deodds": [tpr, fpr],
        "deodds_fairlearn": [(undefined_as_zero(rates["tpr"]), plan.shown),
                             (undefined_as_zero(rates["fpr"]), plan.shown)],
        "tpr_gap": [tpr],
        "fpr_gap": [fpr],
    }


def _summary_estimates(point: Tallies, resamples: Tallies | None, plan: Plan,
                       groups: GroupIndex, ci_level: float) -> dict[str, Estimate]:
    reasons = _undefined_reasons(point)
    estimates = {}
    resampled_levels = levels(resamples, plan) if resamples is not None else {}
    for name, values in levels(point, plan).items():
        interval = (percentile_interval(resampled_levels[name], ci_level)
                    if resamples is not None else None)
        estimates[name] = _estimate(values[0], interval, reasons[name])
    resampled_gaps = gap_components(resamples, plan) if resamples is not None else {}
    for name, components in gap_components(point, plan).items():
        gap = largest_gap(components)[0]
        interval = None
        if resamples is not None:
            noise = largest_gap(deviations(resampled_gaps[name], components))
            interval = gap_interval(gap, noise, ci_level)
        estimates[name] = _estimate(gap, interval, reasons[name])
    convention = _equalized_odds_note(plan, groups, estimates["deodds_fairlearn"])
    if convention:
        estimates["deodds"] = _with_note(estimates["deodds"], convention)
    return estimates


def _undefined_reasons(point: Tallies) -> dict[str, str]:
    """Why each summary quantity would be undefined at the point estimate."""
    few_auc = "fewer than two shown groups have a defined AUC"
    few_groups = "fewer than two groups are shown"
    reasons = {"auc": "", "accuracy": "", "es_auc": few_auc, "worst_group_auc": few_auc,
               "auc_gap": few_auc, "es_acc": few_groups, "dpd": few_groups,
               "deodds": "fewer than two shown groups have a defined TPR or FPR",
               "deodds_fairlearn": few_groups,
               "tpr_gap": "fewer than two shown groups have positives",
               "fpr_gap": "fewer than two shown groups have negatives"}
    if not np.isfinite(point.auc[0]):
        one_class = "the audited pairs hold a single class"
        reasons.update(auc=one_class, es_auc=one_class)
    return reasons


def _equalized_odds_note(plan: Plan, groups: GroupIndex, fairlearn_value: Estimate) -> str:
    """The visible note when DEOdds skips groups whose TPR or FPR is undefined."""
    skipped = [f"TPR of {groups.names[g]} (no positives)"
               for g in np.flatnonzero(plan.shown & ~plan.tpr_members)]
    skipped += [f"FPR of {groups.names[g]} (no negatives)"
                for g in np.flatnonzero(plan.shown & ~plan.fpr_members)]
    if not skipped:
        return ""
    value = fairlearn_value.value
    shown_value = "undefined" if value is None else f"{value:.4f}"
    return (f"undefined {', '.join(skipped)} left out of the gaps; fairlearn's convention "
            f"(undefined rate = 0) gives {shown_value}")


def _group_reports(point: Tallies, resamples: Tallies | None, plan: Plan,
                   groups: GroupIndex, labels: np.ndarray, scores: np.ndarray,
                   row_group: np.ndarray, min_n: int, ci_level: float) -> tuple[GroupReport, ...]:
    rates = {k: v[0] for k, v in group_rates(point.group_counts).items()}
    reports = []
    for g, (name, code) in enumerate(zip(groups.names, groups.codes, strict=True)):
        n, positives = int(plan.n[g]), int(plan.positives[g])
        if not plan.shown[g]:
            reason = ("no pairs" if n == 0 else
                      f"n = {n} is below min_n = {min_n}: hidden from the summary")
            reports.append(GroupReport(name, int(code), n, positives, False,
                                       Estimate(None, note=reason), None, None, None, None,
                                       note=reason))
            continue
        single_class = ("AUC and TPR undefined: no positives" if positives == 0 else
                        "AUC and FPR undefined: no negatives" if positives == n else "")
        interval = (percentile_interval(resamples.group_auc[:, g], ci_level)
                    if resamples is not None else None)
        auc = _estimate(point.group_auc[0, g], interval, single_class)
        in_group = row_group == g
        roc = roc_curve(labels[in_group], scores[in_group]) if not single_class else None
        reports.append(GroupReport(
            name, int(code), n, positives, True, auc,
            tpr=_number(rates["tpr"][g]), fpr=_number(rates["fpr"][g]),
            selection_rate=_number(rates["selection_rate"][g]),
            accuracy=_number(rates["accuracy"][g]), note=single_class, roc=roc))
    return tuple(reports)


def _summary_notes(plan: Plan, groups: GroupIndex, min_n: int) -> list[str]:
    notes = []
    hidden = [f"{groups.names[g]} (n = {plan.n[g]})"
              for g in np.flatnonzero(~plan.shown & (plan.n > 0))]
    if hidden:
        shown = np.count_nonzero(plan.shown)
        notes.append(f"hidden from the summary (n below min_n = {min_n}): {', '.join(hidden)}; "
                     f"ES-AUC, gaps, ES-Acc, DPD and DEOdds use the {shown} "
                     f"group{'' if shown == 1 else 's'} shown")
    no_auc = [groups.names[g] for g in np.flatnonzero(plan.shown & ~plan.auc_members)]
    if no_auc:
        notes.append(f"AUC undefined (a single class) for {', '.join(no_auc)}: left out of "
                     "ES-AUC, worst-group AUC and the AUC gap")
    return notes


def _estimate(value: float, interval: tuple[float | None, float | None, int] | None,
              reason: str) -> Estimate:
    """An :class:`Estimate` from a point value (NaN = undefined) and its bootstrap interval."""
    if not np.isfinite(value):
        return Estimate(None, note=reason)
    if interval is None:
        return Estimate(float(value))
    low, high, n_undefined = interval
    notes = []
    if n_undefined:
        notes.append(f"CI leaves out {n_undefined} resamples in which a group it needs had a "
                     "single class")
    if low is not None and low == high:
        notes.append(f"every resample gave {low:.3f}: an interval without spread understates "
                     "the uncertainty (e.g. a small group whose scores separate perfectly)")
    return Estimate(float(value), low, high, "; ".join(notes))


def _with_note(estimate: Estimate, note: str) -> Estimate:
    joined = "; ".join(filter(None, (note, estimate.note)))
    return Estimate(estimate.value, estimate.ci_low, estimate.ci_high, joined)


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def check_settings(threshold: float, threshold_method: str, min_n: int, n_bootstrap: int,
                    ci_level: float) -> None:
    if not isinstance(threshold, Real) or not np.isfinite(threshold):
        raise ConfigError(f"threshold={threshold!r}: expected a finite number")
    if threshold_method not in THRESHOLD_METHODS:
        raise ConfigError(f"threshold_method={threshold_method!r}: expected one of "
                          f"{', '.join(THRESHOLD_METHODS)}")
    if not isinstance(min_n, Integral) or min_n < 1:
        raise ConfigError(f"min_n={min_n!r}: expected an integer of at least 1")
    if not isinstance(n_bootstrap, Integral) or n_bootstrap < 0:
        raise ConfigError(f"n_bootstrap={n_bootstrap!r}: expected an integer >= 0")
    if not isinstance(ci_level, Real) or not 0.0 < ci_level < 1.0:
        raise ConfigError(f"ci_level={ci_level!r}: expected a number between 0 and 1")
