"""Compare two or more models (checkpoints, finished runs) audited on the same data.

Each model is audited with the same :class:`~fairvlm.config.AuditConfig`
(:func:`fairvlm.audit.run_audit`; embeddings are cached on disk). :func:`compare` lines the
results up in the form of the paper's tables: per attribute, DPD and DEOdds (lower is
better), AUC and ES-AUC (higher is better) and every group's AUC, each with its bootstrap
interval, one column per model and, for every model after the first (the baseline), the
change ``delta = value(model) - value(baseline)`` with its paired bootstrap interval
(:func:`fairvlm.metrics.paired_changes`: both models scored on the same resamples of the same
pairs). A change counts as an improvement or a worsening only when that interval excludes 0
(up for AUCs, down for gaps is better); otherwise it is within noise, however large it looks,
and an undefined value gives no delta.

The download (:func:`comparison_files`) is one zip: ``report.html`` (self-contained, drawn
with :mod:`fairvlm.plots` and the page frame of :mod:`fairvlm.report`) and
``comparison.json`` (every number, each model's origin with a run's training config and
selection, the audit config, fingerprints and library versions).
"""

from __future__ import annotations

import html
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairvlm import plots
from fairvlm.audit import AuditResult, DistributionView, library_versions
from fairvlm.config import threshold_label
from fairvlm.errors import ConfigError, DataError
from fairvlm.jobs import FinishedRun
from fairvlm.metrics import AttributeReport, Change, Estimate, PairedChanges, paired_changes
from fairvlm.report import FigureWriter, html_document, synthetic_notice
from fairvlm.runs import RunDir

HIGHER, LOWER = 1, -1
SUMMARY_METRICS: tuple[tuple[str, str, int], ...] = (
    ("dpd", "DPD", LOWER), ("deodds", "DEOdds", LOWER), ("auc", "AUC", HIGHER),
    ("es_auc", "ES-AUC", HIGHER))
ROW_COLUMNS: tuple[str, ...] = ("attribute", "metric", "group", "n", "better", "model", "value",
                                "ci_low", "ci_high", "note", "delta", "delta_low", "delta_high",
                                "improved")
JSON_FILE, HTML_FILE = "comparison.json", "report.html"
_DELTA_PREFIX = "Δ "
DELTA_MEANING = ("Δ: change from the baseline (the first model) with its paired 95% interval "
                 "(both models on the same resamples of the same pairs). Green: measurably "
                 "better (the interval excludes 0; higher AUC and ES-AUC, lower DPD and "
                 "DEOdds), red: measurably worse, uncoloured: within noise. The interval "
                 "covers the pairs' sampling noise, not training randomness: one fine-tune "
                 "can differ measurably by luck of its seed, so judge a method on several "
                 "seeds.")


@dataclass(frozen=True)
class ComparedModel:
    """One column of the comparison.

    ``label`` names the column; ``origin`` says where the model came from (``{"kind":
    "model"}``, or ``{"kind": "run", "run": name, "config": <config.json>, "selection":
    <model-selection record>}``); ``result`` is its audit.
    """

    label: str
    spec: str
    result: AuditResult
    origin: dict[str, Any] = field(default_factory=lambda: {"kind": "model"})


@dataclass(frozen=True)
class Comparison:
    """Audits of several models on the same data and split; the first is the baseline.

    ``changes[(label, attribute)]``: the paired changes of every later model from the
    baseline, per attribute.
    """

    models: tuple[ComparedModel, ...]
    created: str
    changes: dict[tuple[str, str], PairedChanges]

    @property
    def baseline(self) -> ComparedModel:
        return self.models[0]

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(audited.name for audited in self.baseline.result.attributes)

    def rows(self) -> pd.DataFrame:
        """One row per attribute, metric and model (columns :data:`ROW_COLUMNS`).

        ``group`` is empty for the summary metrics; ``better`` is +1 (higher is better) or
        -1; ``note`` says why a value is undefined or how its interval was made; ``delta``
        and its paired interval ``delta_low``, ``delta_high`` are None for the baseline and
        for undefined values; ``improved`` is True or False for a measurable change (interval
        excluding 0) and None otherwise.
        """
        records = []
        for attribute in self.attributes:
            reports = [model.result.attribute(attribute).report for model in self.models]
            for metric, group, n, better, estimates in _metric_lines(reports):
                for model, estimate in zip(self.models, estimates, strict=True):
                    change = self.change(model, attribute, group or None, metric)
                    records.append({
                        "attribute": attribute, "metric": metric, "group": group, "n": n,
                        "better": better, "model": model.label, "value": estimate.value,
                        "ci_low": estimate.ci_low, "ci_high": estimate.ci_high,
                        "note": estimate.note, "delta": change.delta,
                        "delta_low": change.ci_low, "delta_high": change.ci_high,
                        "improved": None if not change.sign else change.sign * better > 0,
                    })
        return pd.DataFrame(records, columns=list(ROW_COLUMNS))

    def change(self, model: ComparedModel, attribute: str, group: str | None,
               metric: str) -> Change:
        """``model``'s paired change from the baseline in ``group``'s AUC (a group name) or
        in a summary ``metric`` (a label of :data:`SUMMARY_METRICS`); none for the baseline."""
        if model is self.baseline:
            return Change(None)
        changes = self.changes[(model.label, attribute)]
        if group is not None:
            return changes.group_auc.get(group, Change(None))
        key = next(key for key, label, _ in SUMMARY_METRICS if label == metric)
        return changes.summary[key]

    def side_by_side(self) -> pd.DataFrame:
        """The paper-style table: ``attribute, metric, n``, then per model its value with the
        interval as text (``0.812 [0.781, 0.840]``) and, after the baseline, ``Δ <label>``:
        the change with its paired interval (``+0.012 [-0.004, +0.027]``; None when
        undefined)."""
        rows = self.rows()
        keys = ["attribute", "metric", "n"]
        table = rows[rows["model"] == self.baseline.label][keys].reset_index(drop=True)
        for model in self.models:
            mine = rows[rows["model"] == model.label].reset_index(drop=True)
            table[model.label] = [estimate_text(v, lo, hi) for v, lo, hi in
                                  zip(mine["value"], mine["ci_low"], mine["ci_high"],
                                      strict=True)]
            if model is not self.baseline:
                table[delta_column(model.label)] = [
                    None if pd.isna(delta) else Change(delta, low, high).text()
                    for delta, low, high in zip(mine["delta"], _or_none(mine["delta_low"]),
                                                _or_none(mine["delta_high"]), strict=True)]
        return table

    def undefined_reasons(self) -> list[str]:
        """Why the values :meth:`side_by_side` shows as ``undefined`` are undefined: one line
        per attribute, metric and reason, ``attribute · metric (models): reason``."""
        return self._note_lines(defined=False)

    def value_notes(self) -> list[str]:
        """What the notes of *defined* values say (an interval without spread, resamples left
        out of an interval), in the lines of :meth:`undefined_reasons`."""
        return self._note_lines(defined=True)

    def _note_lines(self, *, defined: bool) -> list[str]:
        rows = self.rows()
        noted = rows[(rows["value"].notna() == defined) & rows["note"].fillna("").astype(bool)]
        return [f"{attribute} · {metric} ({', '.join(part['model'])}): {note}"
                for (attribute, metric, note), part in noted.groupby(
                    ["attribute", "metric", "note"], sort=False)]

    def improvement(self) -> pd.DataFrame:
        """Shaped like :meth:`side_by_side`'s delta columns: True (measurably better), False
        (measurably worse), None (within noise or undefined)."""
        rows = self.rows()
        return pd.DataFrame({
            delta_column(model.label):
                rows[rows["model"] == model.label]["improved"].reset_index(drop=True)
            for model in self.models[1:]})

    def to_dict(self) -> dict[str, Any]:
        """Every number with the models' origins, configs, fingerprints and versions."""
        base = self.baseline.result
        return {
            "created": self.created,
            "data": base.data, "split": base.config.split,
            "audit_config": base.config.to_dict(),
            "models": [{
                "label": model.label, "spec": model.spec, "origin": model.origin,
                "model": model.result.model, "fingerprints": model.result.fingerprints,
                "overall": model.result.overall,
                "threshold": {"value": model.result.threshold.value,
                              "method": model.result.threshold.method},
                "attributes": [audited.to_dict() for audited in model.result.attributes],
                "warnings": list(model.result.warnings),
            } for model in self.models],
            "table": json.loads(self.rows().to_json(orient="records")),
            "versions": library_versions(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def compare(models: Sequence[ComparedModel]) -> Comparison:
    """Line up the audits of ``models``; the first is the baseline.

    Raises
    ------
    ConfigError
        Fewer than two models, or a label used twice.
    DataError
        Audits of different data (data fingerprint), splits or attributes.
    """
    if len(models) < 2:
        raise ConfigError(f"compare: {len(models)} model(s) chosen; expected two or more")
    labels = [model.label for model in models]
    repeated = next((label for label in labels if labels.count(label) > 1), None)
    if repeated is not None:
        raise ConfigError(f"compare: the label {repeated!r} is used twice; expected one label "
                          "per model")
    base = models[0].result
    for model in models[1:]:
        result = model.result
        if result.fingerprints["data"] != base.fingerprints["data"]:
            raise DataError(f"compare: {model.label} was audited on other data (fingerprint "
                            f"{result.fingerprints['data']}); expected "
                            f"{base.fingerprints['data']} like {models[0].label}")
        if result.config.split != base.config.split:
            raise DataError(f"compare: {model.label} was audited on split "
                            f"{result.config.split!r}; expected {base.config.split!r}")
        mine = [audited.name for audited in result.attributes]
        theirs = [audited.name for audited in base.attributes]
        if mine != theirs:
            raise DataError(f"compare: {model.label} audits attributes {mine}; expected "
                            f"{theirs}")
    changes = {(model.label, attribute): _paired(models[0].result, model.result, attribute)
               for model in models[1:] for attribute in (a.name for a in base.attributes)}
    return Comparison(tuple(models), datetime.now(UTC).isoformat(timespec="seconds"), changes)


def _paired(base: AuditResult, other: AuditResult, attribute: str) -> PairedChanges:
    """:func:`~fairvlm.metrics.paired_changes` of ``attribute`` from the two audits'
    predictions, with the baseline report's groups and settings (its seed: its resamples)."""
    before, after = base.predictions, other.predictions
    if not np.array_equal(before["id"].to_numpy(), after["id"].to_numpy()):
        raise DataError(f"compare: the audits of {attribute} hold different pairs; expected "
                        "the same split of the same data")
    report = base.attribute(attribute).report
    settings = report.settings
    code_of = {group.name: group.code for group in report.groups}
    codes = np.array([code_of.get(name, settings["unknown_code"])
                      for name in before[attribute]], dtype=np.int64)
    return paired_changes(
        before["label"].to_numpy(), before["probability"].to_numpy(),
        after["probability"].to_numpy(), codes,
        group_names={group.code: group.name for group in report.groups}, attribute=attribute,
        unknown_code=settings["unknown_code"], unknown=settings["unknown"],
        base_threshold=base.threshold.value, new_threshold=other.threshold.value,
        min_n=settings["min_n"], n_bootstrap=settings["n_bootstrap"], seed=settings["seed"],
        ci_level=settings["ci_level"])


def _or_none(values: pd.Series) -> list[float | None]:
    return [None if pd.isna(value) else float(value) for value in values]


def distribution_view(result: AuditResult, attribute: str, statistic: str = "loss"
                      ) -> DistributionView:
    """The distribution view of ``statistic`` (``loss`` or ``similarity``) of ``attribute``."""
    return next(view for view in result.attribute(attribute).distributions
                if view.statistic == statistic)


def run_origin(run: FinishedRun) -> dict[str, Any]:
    """The ``origin`` of a finished run's selected checkpoint: run name and folder, its
    training config (``config.json``) and its model-selection record."""
    return {"kind": "run", "run": run.name, "path": str(run.path),
            "checkpoint": str(run.checkpoint), "config": RunDir(run.path).read_config(),
            "selection": {"epoch": run.epoch, "metric": run.metric}}


def delta_column(label: str) -> str:
    """The name of ``label``'s delta column: ``Δ <label>``."""
    return f"{_DELTA_PREFIX}{label}"


def estimate_text(value: float | None, low: float | None, high: float | None) -> str:
    """``0.812 [0.781, 0.840]``, ``0.812`` without an interval, ``undefined`` without a value."""
    if value is None or pd.isna(value):
        return "undefined"
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _metric_lines(reports: Sequence[AttributeReport]
                  ) -> list[tuple[str, str, int, int, list[Estimate]]]:
    """``(metric, group, n, better, one estimate per model)`` for the summary metrics, then
    for every group's AUC (groups in the baseline's order, matched by name)."""
    base = reports[0]
    lines = [(label, "", base.n, better, [getattr(report, key) for report in reports])
             for key, label, better in SUMMARY_METRICS]
    for group in base.groups:
        estimates = []
        for report in reports:
            match = next((g for g in report.groups if g.name == group.name), None)
            estimates.append(match.auc if match is not None else Estimate(None))
        lines.append((f"AUC {group.name}", group.name, group.n, HIGHER, estimates))
    return lines


def render_html(comparison: Comparison) -> str:
    """The comparison as one self-contained HTML page (plotly.js inline)."""
    figures = FigureWriter()
    base = comparison.baseline
    sections = [_header(comparison), _table_section(comparison)]
    for attribute in comparison.attributes:
        reports = [model.result.attribute(attribute).report for model in comparison.models]
        parts = [f"<section><h2>{_e(attribute)}</h2>",
                 figures(plots.compared_group_auc_figure(
                     reports, [model.label for model in comparison.models]))]
        for model in comparison.models[1:]:
            parts.append(figures(plots.before_after_figure(
                base.result.predictions, model.result.predictions,
                distribution_view(base.result, attribute),
                distribution_view(model.result, attribute),
                labels=(base.label, model.label))))
        parts.append("</section>")
        sections.append("\n".join(parts))
    sections.append(_provenance(comparison))
    title = f"fairvlm comparison: {base.result.data['name']}"
    return html_document(title, sections, extra_css=_CSS)


def write_comparison(comparison: Comparison, out: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``comparison.json`` into the folder ``out`` (created if
    missing); returns their paths."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{folder}: cannot create the output folder ({error.strerror}); "
                          "expected a writable folder") from None
    html_path, json_path = folder / HTML_FILE, folder / JSON_FILE
    html_path.write_text(render_html(comparison), encoding="utf-8")
    json_path.write_text(comparison.to_json() + "\n", encoding="utf-8")
    return html_path, json_path


def numbered_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` with repeats numbered (``name``, ``name #2`` ...), so every column has its
    own."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


def short_label(spec: str) -> str:
    """A file spec's file name, else the spec itself (``ViT-B-16:openai``)."""
    return Path(spec).name if Path(spec).suffix else spec


def comparison_files(comparison: Comparison) -> bytes:
    """The download: a zip of ``report.html`` and ``comparison.json``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(HTML_FILE, render_html(comparison))
        archive.writestr(JSON_FILE, comparison.to_json() + "\n")
    return buffer.getvalue()


def _header(comparison: Comparison) -> str:
    base = comparison.baseline.result
    config = base.config
    facts = [("data", base.data["name"]), ("split", config.split),
             ("threshold", threshold_label(base.threshold.method)),
             ("bootstrap", f"{config.n_bootstrap} resamples, seed {config.seed}"),
             ("created", comparison.created)]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    models = "".join(f"<li><b>{_e(model.label)}</b>{' (baseline)' if i == 0 else ''}: "
                     f"{_e(model.spec)} · weights {_e(model.result.fingerprints['model'])}</li>"
                     for i, model in enumerate(comparison.models))
    return (f"<header><h1>fairvlm comparison report</h1>{synthetic_notice(base.data)}"
            f"<dl class='facts'>{items}</dl><ul>{models}</ul></header>")


def _table_section(comparison: Comparison) -> str:
    table = comparison.side_by_side()
    improvement = comparison.improvement()
    head = "".join(f"<th>{_e(column)}</th>" for column in table.columns)
    body = []
    for position, row in table.iterrows():
        cells = []
        for column in table.columns:
            value = row[column]
            if column in improvement.columns:
                better = improvement.at[position, column]
                kind = "" if better is None or pd.isna(better) else (
                    " class='better'" if better else " class='worse'")
                cells.append(f"<td{kind}>{'' if pd.isna(value) else _e(value)}</td>")
            else:
                cells.append(f"<td>{_e(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"Values with 95% bootstrap intervals. {DELTA_MEANING}"
    return (f"<section><h2>Side by side</h2><table class='compare'><caption>{_e(caption)}"
            f"</caption><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"{_undefined_list(comparison)}</section>")


def _undefined_list(comparison: Comparison) -> str:
    """Under the table: why each ``undefined`` value is undefined
    (:meth:`Comparison.undefined_reasons`) and the notes on defined values
    (:meth:`Comparison.value_notes`); each list only when it has lines."""
    parts = []
    for title, lines in (("Why values are undefined", comparison.undefined_reasons()),
                         ("Notes on values", comparison.value_notes())):
        if lines:
            items = "".join(f"<li>{_e(line)}</li>" for line in lines)
            parts.append(f"<h3>{title}</h3><ul class='undefined'>{items}</ul>")
    return "".join(parts)


def _provenance(comparison: Comparison) -> str:
    parts = ["<section class='provenance'><h2>Provenance</h2>"]
    for model in comparison.models:
        parts.append(f"<h3>{_e(model.label)}</h3><p>{_e(model.spec)}</p>"
                     f"<pre>{_e(json.dumps(model.origin, indent=2))}</pre>"
                     f"<pre>{_e(json.dumps(model.result.fingerprints, indent=2))}</pre>")
    versions = json.dumps(library_versions(), indent=2)
    config = json.dumps(comparison.baseline.result.config.to_dict(), indent=2)
    parts.append(f"<h3>Audit configuration</h3><pre>{_e(config)}</pre>"
                 f"<h3>Versions</h3><pre>{_e(versions)}</pre></section>")
    return "".join(parts)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
.compare td.better { background: #dafbe1; color: #116329; font-weight: 600; }
.compare td.worse { background: #ffebe9; color: #a40e26; font-weight: 600; }
.undefined { color: var(--muted); font-size: 13px; }
"""
