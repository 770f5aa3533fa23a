"""Plotly figures of an audit, built once and drawn by both the HTML report and the app.

Every function takes plain results (an :class:`~fairvlm.metrics.AttributeReport`, a
:class:`~fairvlm.audit.DistributionView` and the predictions frame) and returns a
``plotly.graph_objects.Figure``; none of them computes a metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fairvlm.audit import DistributionView, GroupDistance
from fairvlm.config import attribute_label
from fairvlm.metrics import AttributeReport, GroupReport

PALETTE: tuple[str, ...] = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2",
                            "#FF9DA6", "#9D755D", "#BAB0AC", "#EECA3B")
MUTED = "#9AA0A6"
POPULATION = "all pairs"
STATISTIC_LABELS = {"loss": "per-pair contrastive loss", "similarity": "matched image-text cosine"}
_LAYOUT = {"template": "plotly_white", "font": {"size": 13},
           "margin": {"l": 60, "r": 20, "t": 60, "b": 60}, "height": 420}


def group_colors(names: list[str]) -> dict[str, str]:
    """A stable colour per group name (the same group keeps its colour across figures)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def group_auc_figure(report: AttributeReport) -> go.Figure:
    """Horizontal bar per group: AUC with its bootstrap percentile interval; overall AUC dashed.

    Groups without an AUC keep their row, with the reason written where the bar would be:
    below ``min_n``, no pairs, or a single class.
    """
    groups = report.groups
    names = [group.name for group in groups]
    colors = group_colors(names)
    labels = [f"{g.name} (n = {g.n})" for g in groups]
    figure = go.Figure(go.Bar(
        y=labels, x=[g.auc.value for g in groups], orientation="h",
        marker_color=[colors[n] for n in names], error_x=_error_bars(groups),
        customdata=[[g.n, g.positives, _interval(g)] for g in groups],
        hovertemplate="<b>%{y}</b><br>AUC %{x:.3f} %{customdata[2]}<br>"
                      "positives = %{customdata[1]}<extra></extra>",
        showlegend=False))
    for group, label in zip(groups, labels, strict=True):
        if group.auc.value is None:
            figure.add_annotation(x=0.01, y=label, text=_missing_reason(group), showarrow=False,
                                  xanchor="left", font={"color": MUTED})
    if report.auc.value is not None:
        figure.add_vline(x=report.auc.value, line_dash="dash", line_color="#333",
                         annotation_text=f"overall {report.auc.value:.3f}",
                         annotation_position="top")
    figure.update_yaxes(categoryorder="array", categoryarray=labels[::-1], automargin=True)
    figure.update_xaxes(title="AUC", range=[0, 1.02])
    figure.update_layout(
        title=f"AUC by {attribute_label(report.attribute)} (95% bootstrap CI)",
        **{**_LAYOUT, "height": max(_LAYOUT["height"], 140 + 44 * len(groups))})
    return figure


def roc_figure(report: AttributeReport) -> go.Figure:
    """ROC curve of every group with a defined AUC, and the chance diagonal.

    Points are joined by straight lines (tied scores move the curve diagonally, and the area
    under the polyline is the AUC with ties counted one half); points on a straight run are
    left out (:func:`roc_corners`), which keeps the drawing and shrinks the file.
    """
    colors = group_colors([group.name for group in report.groups])
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", showlegend=False,
                                line={"dash": "dot", "color": MUTED}, hoverinfo="skip"))
    for group in report.groups:
        if group.roc is None:
            continue
        fpr, tpr = roc_corners(group.roc.fpr, group.roc.tpr)
        figure.add_trace(go.Scatter(
            x=fpr, y=tpr, mode="lines",
            name=f"{group.name} ({group.auc.value:.3f}, n = {group.n})",
            line={"color": colors[group.name], "width": 2},
            hovertemplate="FPR %{x:.3f}, TPR %{y:.3f}<extra>" + group.name + "</extra>"))
    figure.update_xaxes(title="false positive rate", range=[0, 1], constrain="domain")
    figure.update_yaxes(title="true positive rate", range=[0, 1.02], scaleanchor="x",
                        constrain="domain")
    figure.update_layout(title=f"ROC by {attribute_label(report.attribute)}",
                         legend={"x": 0.98, "y": 0.02, "xanchor": "right", "yanchor": "bottom",
                                 "bgcolor": "rgba(255,255,255,0.8)"}, **_LAYOUT)
    return figure


def roc_corners(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC points where the polyline turns (first and last kept): a point is dropped
    when the segments before and after it have the same direction (zero cross product)."""
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    if fpr.size <= 2:
        return fpr, tpr
    dx, dy = np.diff(fpr), np.diff(tpr)
    turns = np.abs(dx[:-1] * dy[1:] - dy[:-1] * dx[1:]) > 1e-12
    keep = np.concatenate([[True], turns, [True]])
    return fpr[keep], tpr[keep]


def distribution_figure(predictions: pd.DataFrame, view: DistributionView) -> go.Figure:
    """Horizontal violin (with box) of the statistic for all pairs and for each group.

    "All pairs" is the population the distances were computed against: the rows of the
    view's groups (rows left out as unknown are not in it). The right margin gives each
    group's Sinkhorn divergence ``S`` and ``W2^2/2`` to the population and the permutation
    p-value.
    """
    members = predictions[view.attribute].to_numpy()
    in_population = np.isin(members, [group.group for group in view.groups])
    values = predictions[view.statistic].to_numpy(dtype=np.float32)[in_population]
    members = members[in_population]
    colors = group_colors([group.group for group in view.groups])
    present = [group for group in view.groups if group.n > 0]
    labels = [f"{POPULATION} (n = {values.size})",
              *(f"{group.group} (n = {group.n})" for group in present)]
    figure = go.Figure()
    figure.add_trace(_violin(values, labels[0], "#555"))
    for group, label in zip(present, labels[1:], strict=True):
        figure.add_trace(_violin(values[members == group.group], label, colors[group.group]))
    figure.add_annotation(x=1.0, y=labels[0], xref="paper", xanchor="left", showarrow=False,
                          align="left", text="<b>distance to all pairs</b>", xshift=12,
                          font={"size": 12})
    for group, label in zip(present, labels[1:], strict=True):
        figure.add_annotation(x=1.0, y=label, xref="paper", xanchor="left", showarrow=False,
                              align="left", text=_distance_text(group), xshift=12,
                              font={"size": 12})
    title = STATISTIC_LABELS.get(view.statistic, view.statistic)
    figure.update_xaxes(title=title, zeroline=False)
    figure.update_yaxes(categoryorder="array", categoryarray=labels[::-1], automargin=True)
    figure.update_layout(
        title=f"{title.capitalize()} by {attribute_label(view.attribute)}", showlegend=False,
        violingap=0.25,
        **{**_LAYOUT, "height": 120 + 56 * len(labels),
           "margin": {**_LAYOUT["margin"], "r": 250}})
    return figure


def _violin(values: np.ndarray, label: str, color: str) -> go.Violin:
    return go.Violin(x=values, y0=label, name=label,
                     orientation="h", line_color=color, fillcolor=color, opacity=0.6,
                     box_visible=True, meanline_visible=True, points=False, spanmode="hard",
                     width=0.8, hoveron="violins+kde")


def _distance_text(group: GroupDistance) -> str:
    """``S … · W2^2/2 …`` and ``p = …``; a value that was not computed is left out."""
    distances = [f"{label} {value:.3g}" for label, value in
                 (("S", group.sinkhorn), ("W₂²/2", group.w2)) if value is not None]
    lines = [" · ".join(distances)]
    if group.p_value is not None:
        lines.append(f"p = {group.p_value:.3f}")
    return "<br>".join(lines)


def _error_bars(groups: list[GroupReport]) -> dict:
    upper = [_distance(g.auc.ci_high, g.auc.value) for g in groups]
    lower = [_distance(g.auc.value, g.auc.ci_low) for g in groups]
    return {"type": "data", "symmetric": False, "array": upper, "arrayminus": lower,
            "color": "#333", "thickness": 1.5, "width": 6}


def _distance(high: float | None, low: float | None) -> float:
    return 0.0 if high is None or low is None else max(0.0, high - low)


def _missing_reason(group: GroupReport) -> str:
    if group.n == 0:
        return "no pairs"
    if not group.shown:
        return "below min_n: hidden"
    return "undefined: one class only"


def _interval(group: GroupReport) -> str:
    if group.auc.ci_low is None or group.auc.ci_high is None:
        return ""
    return f"[{group.auc.ci_low:.3f}, {group.auc.ci_high:.3f}]"


def compared_group_auc_figure(reports: Sequence[AttributeReport], labels: Sequence[str]
                              ) -> go.Figure:
    """Overall and per-group AUC of several models (one bar colour per model) with their
    bootstrap intervals; groups in the first report's order, undefined AUCs left blank."""
    groups = [group.name for group in reports[0].groups]
    categories = ["overall", *groups]
    figure = go.Figure()
    for position, (report, label) in enumerate(zip(reports, labels, strict=True)):
        by_name = {group.name: group.auc for group in report.groups}
        estimates = [report.auc, *(by_name.get(name) for name in groups)]
        values = [None if e is None else e.value for e in estimates]
        figure.add_trace(go.Bar(
            x=categories, y=values, name=label, marker_color=PALETTE[position % len(PALETTE)],
            error_y={"type": "data", "symmetric": False, "color": "#333", "thickness": 1.2,
                     "array": [_distance(e.ci_high, e.value) if e else 0 for e in estimates],
                     "arrayminus": [_distance(e.value, e.ci_low) if e else 0
                                    for e in estimates]},
            hovertemplate=f"<b>{label}</b><br>%{{x}}: AUC %{{y:.3f}}<extra></extra>"))
    figure.update_yaxes(title="AUC", range=[0, 1.02])
    figure.update_layout(
        title=f"AUC by {attribute_label(reports[0].attribute)}, models compared (95% CI)",
        barmode="group", legend={"orientation": "h", "y": -0.15}, **_LAYOUT)
    return figure


def before_after_figure(before: pd.DataFrame, after: pd.DataFrame,
                        before_view: DistributionView, after_view: DistributionView,
                        labels: tuple[str, str]) -> go.Figure:
    """Split violins of a per-pair statistic for all pairs and each group: the baseline
    (``labels[0]``, lower half) against another model (upper half).

    The right margin gives each group's distance to all pairs before and after: the Sinkhorn
    divergence ``S`` when both were computed, else ``W2^2/2``.
    """
    groups = [group for group in before_view.groups if group.n > 0]
    after_groups = {group.group: group for group in after_view.groups}
    names = [group.group for group in groups]
    rows = {POPULATION: f"{POPULATION} (n = {sum(group.n for group in groups)})",
            **{group.group: f"{group.group} (n = {group.n})" for group in groups}}
    figure = go.Figure()
    for frame, label, side, color in ((before, labels[0], "negative", PALETTE[0]),
                                      (after, labels[1], "positive", PALETTE[1])):
        members = frame[before_view.attribute].to_numpy()
        values = frame[before_view.statistic].to_numpy(dtype=np.float32)
        kept = np.isin(members, names)
        x = np.concatenate([values[kept], values[kept]])
        y = [rows[POPULATION]] * int(kept.sum()) + [rows[name] for name in members[kept]]
        figure.add_trace(go.Violin(x=x, y=y, name=label, orientation="h", side=side,
                                   line_color=color, fillcolor=color, opacity=0.6,
                                   meanline_visible=True, points=False, spanmode="hard",
                                   width=0.9, scalegroup=label))
    for group in groups:
        other = after_groups.get(group.group)
        figure.add_annotation(x=1.0, y=rows[group.group], xref="paper", xanchor="left",
                              showarrow=False, align="left", xshift=12, font={"size": 12},
                              text=_change_text(group, other))
    title = STATISTIC_LABELS.get(before_view.statistic, before_view.statistic)
    figure.update_xaxes(title=title, zeroline=False)
    figure.update_yaxes(categoryorder="array", categoryarray=list(rows.values())[::-1],
                        automargin=True)
    figure.update_layout(
        title=f"{title.capitalize()} by {attribute_label(before_view.attribute)}: "
              f"{labels[0]} → {labels[1]}",
        violingap=0.2, violinmode="overlay", legend={"orientation": "h", "y": -0.2},
        **{**_LAYOUT, "height": 160 + 64 * len(rows),
           "margin": {**_LAYOUT["margin"], "r": 200}})
    return figure


def _change_text(before: GroupDistance, after: GroupDistance | None) -> str:
    """``S 0.031 → 0.012`` (or ``W₂²/2 ...`` when a Sinkhorn value is missing)."""
    if after is None:
        return ""
    if before.sinkhorn is not None and after.sinkhorn is not None:
        return f"S {before.sinkhorn:.3g} → {after.sinkhorn:.3g}"
    if before.w2 is not None and after.w2 is not None:
        return f"W₂²/2 {before.w2:.3g} → {after.w2:.3g}"
    return ""
