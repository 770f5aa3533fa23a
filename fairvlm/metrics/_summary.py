"""A plain-language reading of an :class:`AttributeReport`."""

from __future__ import annotations

from fairvlm.metrics._report import AttributeReport, Estimate
from fairvlm.metrics._thresholds import threshold_label


def summarize(report: AttributeReport) -> str:
    """Which group does worst, by how much, and whether the gap exceeds bootstrap noise.

    The gap is called larger than noise when its simultaneous bootstrap interval (see
    :class:`AttributeReport`) excludes 0.
    """
    level = f"{report.settings['ci_level']:.0%}"
    sentences = []
    if report.worst_group is None:
        sentences.append(f"{report.attribute}: no between-group comparison of AUC "
                         f"({report.auc_gap.note}).")
    else:
        worst, best = report.group(report.worst_group), report.group(report.best_group)
        sentences.append(
            f"{report.attribute}: {worst.name} has the lowest AUC ({_fmt(worst.auc.value)}, "
            f"n = {worst.n}) and {best.name} the highest ({_fmt(best.auc.value)}, "
            f"n = {best.n}): a gap of {_fmt(report.auc_gap.value)}.")
        sentences.append(_noise_sentence(report.auc_gap, level))
    if report.es_auc.value is not None:
        sentences.append(f"ES-AUC {_fmt(report.es_auc.value)} against an overall AUC of "
                         f"{_fmt(report.auc.value)}.")
    sentences.append(
        f"At threshold {report.threshold:.3g} ({threshold_label(report.threshold_method)}): "
        f"DPD {_fmt(report.dpd.value)}, DEOdds {_fmt(report.deodds.value)}.")
    sentences.extend(f"Note: {note}." for note in report.notes)
    return " ".join(sentences)


def _noise_sentence(gap: Estimate, level: str) -> str:
    if gap.ci_low is None or gap.ci_high is None:
        return "Without bootstrap intervals the gap cannot be compared with sampling noise."
    interval = f"its {level} bootstrap interval is {_fmt(gap.ci_low)} to {_fmt(gap.ci_high)}"
    if gap.ci_low > 0:
        return f"The gap exceeds bootstrap noise: {interval}, which excludes 0."
    return f"The gap is within bootstrap noise: {interval}, which includes 0."


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
