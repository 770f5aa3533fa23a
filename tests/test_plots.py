"""Plotly figures of an audit: they draw the audit's numbers, checked against sklearn."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from fairvlm import plots
from fairvlm.audit import run_audit
from fairvlm.config import AuditConfig
from fairvlm.data import load_dataset
from fairvlm.models import load_model


@pytest.fixture(scope="module")
def result(small_demo_dir, tiny_checkpoint):
    config = AuditConfig(attributes=("race", "gender"), min_n=5, n_bootstrap=100,
                         n_permutations=10)
    return run_audit(load_dataset(small_demo_dir), load_model(str(tiny_checkpoint),
                                                              device="cpu"), config)


def test_group_auc_bars_carry_values_and_interval_half_widths(result) -> None:
    report = result.attribute("race").report
    figure = plots.group_auc_figure(report)
    assert isinstance(figure, go.Figure)
    bars = figure.data[0]
    assert list(bars.y) == [f"{group.name} (n = {group.n})" for group in report.groups]
    for group, height, upper, lower in zip(report.groups, bars.x, bars.error_x.array,
                                           bars.error_x.arrayminus, strict=True):
        if group.auc.value is None:
            assert height is None
            continue
        assert height == group.auc.value
        assert upper == pytest.approx(group.auc.ci_high - group.auc.value)
        assert lower == pytest.approx(group.auc.value - group.auc.ci_low)
    undefined = [g for g in report.groups if g.auc.value is None]
    assert undefined, "the small demo's Asian and Black test groups are below min_n = 5"
    reasons = {a.y: a.text for a in figure.layout.annotations if a.y is not None}
    for group in undefined:
        assert reasons[f"{group.name} (n = {group.n})"] == "below min_n: hidden"


def test_roc_curves_are_sklearns_points_with_the_same_area(result) -> None:
    report = result.attribute("gender").report
    frame = result.predictions
    curves = {trace.name.split(" (")[0]: trace for trace in plots.roc_figure(report).data[1:]}
    assert set(curves) == {g.name for g in report.groups if g.auc.value is not None}
    for name, trace in curves.items():
        members = frame[frame["gender"] == name]
        fpr, tpr, _ = roc_curve(members["label"], members["probability"],
                                drop_intermediate=False)
        drawn = set(zip(trace.x, trace.y, strict=True))
        assert drawn <= set(zip(fpr, tpr, strict=True))
        assert {(0.0, 0.0), (1.0, 1.0)} <= drawn
        area = np.sum(np.diff(trace.x) * (trace.y[1:] + trace.y[:-1]) / 2)
        assert area == pytest.approx(roc_auc_score(members["label"], members["probability"]))


def test_roc_corners_drop_only_points_on_straight_runs() -> None:
    fpr = np.array([0.0, 0.0, 0.0, 0.25, 0.5, 0.5, 1.0])
    tpr = np.array([0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0])
    x, y = plots.roc_corners(fpr, tpr)
    assert list(zip(x, y, strict=True)) == [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
    diagonal = plots.roc_corners(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0]))
    assert [list(a) for a in diagonal] == [[0.0, 1.0], [0.0, 1.0]]


@pytest.mark.parametrize("statistic", ["loss", "similarity"])
def test_distribution_violins_hold_each_groups_values_and_distances(result,
                                                                    statistic: str) -> None:
    view = next(v for v in result.attribute("race").distributions if v.statistic == statistic)
    frame = result.predictions
    figure = plots.distribution_figure(frame, view)
    violins = figure.data
    assert len(violins) == 1 + sum(group.n > 0 for group in view.groups)
    np.testing.assert_allclose(violins[0].x, frame[statistic].to_numpy(), rtol=1e-6)
    texts = [a.text for a in figure.layout.annotations]
    for group, violin in zip(view.groups, violins[1:], strict=True):
        expected = frame.loc[frame["race"] == group.group, statistic].to_numpy()
        np.testing.assert_allclose(violin.x, expected, rtol=1e-6)
        assert violin.name == f"{group.group} (n = {group.n})"
        assert f"S {group.sinkhorn:.3g} · W₂²/2 {group.w2:.3g}<br>p = {group.p_value:.3f}" \
            in texts


def test_group_colours_are_stable_across_figures(result) -> None:
    report = result.attribute("race").report
    colors = plots.group_colors([g.name for g in report.groups])
    bars = plots.group_auc_figure(report).data[0]
    assert list(bars.marker.color) == [colors[g.name] for g in report.groups]
    view = result.attribute("race").distributions[0]
    violins = plots.distribution_figure(result.predictions, view).data[1:]
    assert [v.line.color for v in violins] == [colors[g.group] for g in view.groups]
