"""Plotly figures of the bad-pair browser (used by the app only, so not in fairvlm.plots).

Both take what the browser already computed and compute nothing themselves.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from fairvlm.plots import MUTED, PALETTE
from fairvlm.ui.pair_browser import RunEvidence

_LAYOUT = {"template": "plotly_white", "font": {"size": 12},
           "margin": {"l": 50, "r": 10, "t": 40, "b": 40}}
FLAGGED_COLOR = "#E45756"


def trajectory_figure(evidence: RunEvidence, pair_id: str) -> go.Figure:
    """One pair's loss in every epoch and DBPM's verdicts on it, inside the mu/sigma band.

    A verdict at x = t is judged at the start of epoch t from epochs ``< t``
    (t = the number of recorded epochs is the verdict after training). The band spans
    ``mu - beta_np sigma`` to ``mu + beta_fp sigma``: a weighted mean loss ``m_i`` outside it
    is flagged (noisy below, faulty above).
    """
    memory, history, final = evidence.memory, evidence.history, evidence.final
    row = int(memory.rows([pair_id])[0])
    recorded = memory.epochs_recorded
    judged = [t for t in range(recorded) if not np.isnan(memory.mu[t])]
    steps = np.array([*judged, recorded])
    mu = np.array([*memory.mu[judged], final.mu])
    sigma = np.array([*memory.sigma[judged], final.sigma])
    score = np.array([*memory.score[row, judged], final.score[row]])
    flagged = np.array([*(memory.noisy[row, judged] | memory.faulty[row, judged]),
                        final.flagged[row]])
    config = memory.config
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=steps, y=mu + config.beta_fp * sigma, mode="lines",
                                line={"width": 0}, hoverinfo="skip", showlegend=False))
    figure.add_trace(go.Scatter(
        x=steps, y=mu - config.beta_np * sigma, mode="lines", line={"width": 0},
        fill="tonexty", fillcolor="rgba(154,160,166,0.25)",
        name=f"normal range μ − {config.beta_np:g}σ … μ + {config.beta_fp:g}σ",
        hoverinfo="skip"))
    figure.add_trace(go.Scatter(x=steps, y=mu, mode="lines", name="population mean μ",
                                line={"dash": "dash", "color": MUTED}))
    figure.add_trace(go.Scatter(x=np.arange(recorded), y=history[row, :recorded],
                                mode="lines+markers", name="loss in the epoch",
                                line={"color": PALETTE[0]}))
    figure.add_trace(go.Scatter(
        x=steps, y=score, mode="lines+markers", name="weighted mean mᵢ (judged)",
        line={"color": PALETTE[1]},
        marker={"size": 9, "color": np.where(flagged, FLAGGED_COLOR, PALETTE[1]).tolist()}))
    figure.update_xaxes(title="epoch", dtick=1)
    figure.update_yaxes(title="per-pair loss")
    figure.update_layout(height=300, legend={"orientation": "h", "y": -0.3}, **_LAYOUT)
    return figure


def makeup_figure(makeup: pd.DataFrame, attribute: str) -> go.Figure:
    """Each group's share of the flagged pairs next to its share of all pairs (base rate)."""
    figure = go.Figure()
    for column, color in (("share of all", MUTED), ("share of flagged", FLAGGED_COLOR)):
        figure.add_trace(go.Bar(x=makeup["group"], y=makeup[column], name=column,
                                marker_color=color, customdata=makeup[["n", "flagged"]],
                                hovertemplate="%{x}: %{y:.1%} (n = %{customdata[0]}, "
                                              "flagged = %{customdata[1]})<extra></extra>"))
    figure.update_yaxes(title="share", tickformat=".0%")
    figure.update_layout(barmode="group", height=320, title=f"Flagged pairs by {attribute}",
                         **_LAYOUT)
    return figure
