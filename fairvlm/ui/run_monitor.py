"""What the Fine-tune page shows of a run, read from its folder (the app never writes there).

- :func:`run_table`: one row per run (state, settings, progress, test AUC / ES-AUC);
- :func:`progress_line`: ``epoch 2 / 10 · step 40 / 200 · about 3 min left``;
- :func:`selection_line`: which epoch model selection kept, and why, in words;
- :func:`change_from_start`: a test metric's change from the starting model, with its paired
  interval and whether it is measurable (``eval.json``'s ``change_from_start``);
- :func:`small_group_warning`: the validation groups a new run's ES-AUC leaves out;
- :func:`loss_curves`: per step, the objective ``L = mean_i(w_i l_i) + lambda sum_g R_g`` and
  its two terms, ``mean_i(w_i l_i)`` (the DBPM-weighted CLIP loss) and ``lambda sum_g R_g``;
- :func:`epoch_table`: per epoch, validation AUC and ES-AUC of the run's attribute, DBPM's
  noisy and faulty pair counts (judged on the loss history up to that epoch) and the
  flagged members seen in the epoch's batches; the starting model's row comes first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fairvlm.errors import FairVLMError
from fairvlm.jobs import job_state, read_evaluation
from fairvlm.metrics import Change
from fairvlm.runs import RunDir, RunStatus, RunSummary
from fairvlm.train.evaluation import describe_selection, metric_label, selected_entry

LOSS_TERMS: dict[str, str] = {"loss": "objective L", "clip": "CLIP loss mean(w·l)",
                              "weighted_fairness": "λ · Σ_g R_g"}


def read_config(run: RunDir) -> dict[str, Any]:
    """The run's ``config.json`` ({} when it cannot be read: the run list says why)."""
    try:
        return run.read_config()
    except FairVLMError:
        return {}


def run_table(summaries: Sequence[RunSummary]) -> pd.DataFrame:
    """One row per run: ``run, state, attribute, lambda, epochs, progress, updated, test AUC,
    test ES-AUC`` (the last two once the run is done, at the selected epoch)."""
    rows = []
    for summary in summaries:
        run = RunDir(summary.path)
        config = read_config(run)
        evaluation = read_evaluation(run) or {}
        test = evaluation.get("test") or {}
        rows.append({
            "run": summary.name, "state": job_state(summary),
            "attribute": config.get("attribute"), "lambda": config.get("lam"),
            "epochs": config.get("epochs"),
            "progress": _fraction(summary.step, summary.total),
            "updated": summary.updated.replace("T", " ").replace("+00:00", " UTC"),
            "test AUC": _value(test.get("auc")), "test ES-AUC": _value(test.get("es_auc")),
        })
    return pd.DataFrame(rows, columns=["run", "state", "attribute", "lambda", "epochs",
                                       "progress", "updated", "test AUC", "test ES-AUC"])


def progress_line(status: RunStatus, epochs: int) -> str:
    """``epoch e / E · step s / T · about 3 min left`` (epochs counted from 1)."""
    parts = [f"epoch {min(status.epoch + 1, epochs)} / {epochs}"]
    if status.total:
        parts.append(f"step {status.step:,} / {status.total:,}")
    if status.eta_s is not None and status.state == "running":
        parts.append(f"about {duration(status.eta_s)} left")
    return " · ".join(parts)


def selection_line(selection: Mapping[str, Any]) -> str:
    """``Done: epoch 3 selected by validation ES-AUC.``: :func:`describe_selection` of
    ``eval.json``'s ``selection``."""
    return f"Done: {describe_selection(selection)}"


def start_was_better(records: Sequence[Mapping[str, Any]],
                     selection: Mapping[str, Any]) -> str | None:
    """A line when the starting model (``metrics.jsonl``'s ``baseline`` record) scored higher
    on validation, by the metric that selected the epoch, than the selected epoch: no
    fine-tuned epoch improved on it. None otherwise."""
    baseline = next((record for record in records if record.get("kind") == "baseline"), None)
    entry = selected_entry(selection)
    if baseline is None or entry is None or entry.get("value") is None:
        return None
    start = (baseline.get("val") or {}).get(entry["metric"])
    if start is None or start <= entry["value"]:
        return None
    return (f"The starting model scored higher on validation {metric_label(entry['metric'])} "
            f"({start:.3f}) than the best fine-tuned epoch ({entry['value']:.3f}): this "
            "fine-tune did not improve on it.")


def dbpm_idle_note(config: Mapping[str, Any]) -> str | None:
    """A line when DBPM never reweighted a pair: its warm-up (``DBPM from epoch``) reaches
    the run's last epoch. None otherwise (or with DBPM off)."""
    if config.get("dbpm", "off") == "off":
        return None
    warmup, epochs = int(config.get("warmup") or 0), int(config.get("epochs") or 1)
    if warmup < epochs:
        return None
    return (f"DBPM judges pairs from epoch {warmup + 1} on and this run has {epochs} "
            f"epoch(s): no pair was reweighted. The faulty and noisy counts are its verdict "
            "after the last epoch.")


def change_from_start(evaluation: Mapping[str, Any], key: str) -> TileChange | None:
    """A test tile's change from the starting model (``key``: ``auc`` or ``es_auc``): delta
    ``+0.006 vs start`` coloured ``normal`` (green up, red down, with an arrow) when the paired
    interval excludes 0 and ``off`` (grey, no arrow) when it holds 0, the interval in words
    for the tile's help;
    None without a defined change (an older run, no test split, an undefined metric)."""
    summary = (evaluation.get("change_from_start") or {}).get("summary") or {}
    if key not in summary:
        return None
    change = Change.from_dict(summary[key])
    if change.delta is None:
        return None
    words = "measurable" if change.sign else change.verdict
    return TileChange(f"{change.delta_text} vs start", "normal" if change.sign else "off",
                      "auto" if change.sign else "off",
                      f"Change from the starting model on the same test pairs: "
                      f"{change.text()} (paired 95% interval), {words}.")


@dataclass(frozen=True)
class TileChange:
    """What :func:`change_from_start` gives a ``st.metric`` tile: ``delta``, ``colour``
    (``delta_color``), ``arrow`` (``delta_arrow``: none for a change within noise) and
    ``help``."""

    delta: str
    colour: str
    arrow: str
    help: str


def small_group_warning(counts: pd.DataFrame, attribute: str, min_n: int,
                        selection: str) -> str | None:
    """What a run's ES-AUC will leave out, from the validation ``counts`` of ``attribute``
    (:func:`fairvlm.ui.tables.group_counts`: ``group, n, ...``); None when no group with pairs
    is below ``min_n`` (the run's smallest group in ES-AUC).

    When fewer than two groups reach ``min_n`` and ``selection`` is ``es_auc``, it adds that
    validation ES-AUC is undefined and the epoch is selected by validation AUC.
    """
    small = counts[(counts["n"] > 0) & (counts["n"] < min_n)]
    if small.empty:
        return None
    names = ", ".join(f"{group} (n = {int(n):,})" for group, n in zip(small["group"], small["n"],
                                                                        strict=True))
    line = (f"Validation groups of {attribute} smaller than the smallest group in ES-AUC "
            f"({min_n:,}): {names}. They are left out of this run's ES-AUC")
    if int((counts["n"] >= min_n).sum()) < 2 and selection == "es_auc":
        line += ("; with fewer than two groups left, validation ES-AUC is undefined and the "
                 "epoch is selected by validation AUC")
    return (f"{line}. Lower 'Smallest group in ES-AUC' (More settings) to include them; "
            "their intervals will be wide.")


def duration(seconds: float) -> str:
    """``45 s``, ``3 min``, ``1 h 05 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def loss_curves(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Step-indexed columns of :data:`LOSS_TERMS` present in the step records."""
    steps = [record for record in records if record.get("kind") == "step"]
    frame = pd.DataFrame({label: [record.get(key) for record in steps]
                          for key, label in LOSS_TERMS.items()},
                         index=pd.Index([record["step"] for record in steps], name="step"))
    return frame.dropna(axis=1, how="all").astype(float)


def epoch_table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row for the starting model (epoch 0), then one per finished epoch (from 1).

    Columns ``epoch, val AUC, val ES-AUC, noisy, faulty, flagged in batches, selected``;
    ``selected`` marks the epoch model selection holds after the newest epoch. The starting
    model has no DBPM counts (None).
    """
    epochs = [record for record in records if record.get("kind") == "epoch"]
    holding = epochs[-1].get("selected_epoch") if epochs else None
    rows = []
    for record in records:
        if record.get("kind") not in ("baseline", "epoch"):
            continue
        val = record.get("val") or {}
        is_epoch = record["kind"] == "epoch"
        rows.append({
            "epoch": record["epoch"] + 1 if is_epoch else 0,
            "val AUC": val.get("auc"), "val ES-AUC": val.get("es_auc"),
            "noisy": record.get("noisy"), "faulty": record.get("faulty"),
            "flagged in batches": record.get("flagged_in_batches"),
            "selected": is_epoch and record["epoch"] == holding,
        })
    table = pd.DataFrame(rows, columns=["epoch", "val AUC", "val ES-AUC", "noisy", "faulty",
                                        "flagged in batches", "selected"])
    counts = ["noisy", "faulty", "flagged in batches"]
    table[counts] = table[counts].astype("Int64")
    return table.astype({"val AUC": float, "val ES-AUC": float})


def _fraction(step: int | None, total: int | None) -> float | None:
    return None if not total else min(1.0, (step or 0) / total)


def _value(estimate: Any) -> float | None:
    return estimate.get("value") if isinstance(estimate, Mapping) else None
