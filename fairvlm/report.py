"""Write an audit's files: ``metrics.json``, ``predictions.csv`` and a self-contained report.html.

``metrics.json``
    :meth:`fairvlm.audit.AuditResult.to_json`: every number, the config, the data, model and
    config fingerprints, and the library versions.
``predictions.csv``
    One row per pair of the audited split: ``id, split, label, probability, prediction,
    similarity, loss, rank, margin`` and every attribute (and audited intersection) by group
    name; floats at full precision, so every metric can be recomputed from it.
``report.html``
    One file that opens offline: plotly.js is embedded once, followed by the figures of
    :mod:`fairvlm.plots`, the metric tables, the plain-language summaries, fingerprints and
    versions. Every text that comes from the data or the user is HTML-escaped.

Each file is written atomically (:func:`fairvlm.paths.atomic_write`).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from fairvlm import plots
from fairvlm.audit import AttributeAudit, AuditResult, DistributionView
from fairvlm.metrics import AttributeReport, Estimate
from fairvlm.paths import atomic_write

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
REPORT_FILE = "report.html"
HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("auc", "AUC"),
    ("es_auc", "ES-AUC = AUC / (1 + Σ|AUC_g − AUC|)"),
    ("worst_group_auc", "worst-group AUC"),
    ("auc_gap", "AUC gap (max − min)"),
    ("accuracy", "accuracy"),
    ("es_acc", "ES-accuracy"),
    ("dpd", "demographic parity difference"),
    ("deodds", "equalized odds difference"),
    ("deodds_fairlearn", "equalized odds difference (fairlearn's convention)"),
)
_FIGURE_CONFIG = {"displaylogo": False, "responsive": True}
# A figure drawn while the page is still being parsed may size itself to a wider box than the
# one it ends up in; plotly's "responsive" option only follows window resizes.
_RESIZE_ON_LOAD = ("window.addEventListener('load', () => document.querySelectorAll("
                   "'.js-plotly-plot').forEach(div => Plotly.Plots.resize(div)));")


@dataclass(frozen=True)
class ReportFiles:
    """Paths of the three files :func:`write_report` wrote."""

    metrics: Path
    predictions: Path
    html: Path


def write_report(result: AuditResult, out_dir: str | os.PathLike[str]) -> ReportFiles:
    """Write ``metrics.json``, ``predictions.csv`` and ``report.html`` into ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(folder / METRICS_FILE, folder / PREDICTIONS_FILE, folder / REPORT_FILE)
    _write_text(files.metrics, result.to_json() + "\n")
    _write_text(files.predictions, result.predictions.to_csv(index=False))
    _write_text(files.html, render_html(result))
    return files


def render_html(result: AuditResult) -> str:
    """The whole report as one HTML document (plotly.js inline, no external resources)."""
    figures = FigureWriter()
    sections = [_header(result), _overview(result)]
    sections += [_attribute_section(audited, result, figures) for audited in result.attributes]
    sections.append(_provenance(result))
    title = f"fairvlm audit: {result.data['name']} / {result.model['spec']}"
    return html_document(title, sections)


def html_document(title: str, sections: Sequence[str], *, extra_css: str = "") -> str:
    """A report page: ``sections`` (HTML fragments) in the report's frame and style."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{_CSS}{extra_css}</style>\n</head>\n<body>\n"
            "<main>\n" + "\n".join(sections) + f"\n</main>\n<script>{_RESIZE_ON_LOAD}"
            "</script>\n</body>\n</html>\n")


class FigureWriter:
    """Turns figures into HTML fragments; the first one carries plotly.js."""

    def __init__(self) -> None:
        self._count = 0

    def __call__(self, figure: go.Figure) -> str:
        fragment = figure.to_html(full_html=False, include_plotlyjs=self._count == 0,
                                  div_id=f"figure-{self._count}", config=_FIGURE_CONFIG)
        self._count += 1
        return f'<div class="figure">{fragment}</div>'


def _header(result: AuditResult) -> str:
    config, threshold = result.config, result.threshold
    chosen = (f"chosen on {threshold.chosen_on} ({threshold.n_chosen_on} pairs) by "
              f"{'Youden’s J' if threshold.method == 'youden' else 'best F1'}"
              if threshold.chosen_on else "fixed")
    scorer = config.scorer
    if config.scorer == "zero-shot":
        scorer += " (softmax over " + ("s · cosine" if config.use_logit_scale
                                       else "raw cosine, FairCLIP parity") + ")"
    facts = [("data", result.data["name"]), ("model", result.model["spec"]),
             ("split", config.split), ("scorer", scorer),
             ("threshold", f"{threshold.value:.4g}, {chosen}"),
             ("bootstrap", f"{config.n_bootstrap} resamples, seed {config.seed}"),
             ("created", result.created)]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    return f"<header><h1>fairvlm audit report</h1><dl class='facts'>{items}</dl></header>"


def _overview(result: AuditResult) -> str:
    overall = result.overall
    auc = "undefined" if overall["auc"] is None else f"{overall['auc']:.3f}"
    stats = (f"<p class='overall'><b>{overall['n']}</b> pairs in split "
             f"<b>{_e(result.config.split)}</b>, {overall['positives']} with glaucoma. "
             f"Overall AUC <b>{auc}</b>; accuracy at the threshold "
             f"<b>{overall['accuracy']:.3f}</b>.</p>")
    summaries = "".join(
        f"<li>{_e(a.summary)} <a href='#{_anchor(a.name)}'>details</a></li>"
        for a in result.attributes)
    warnings = _warning_box(result.warnings)
    return (f"<section><h2>Summary</h2>{stats}{warnings}<ul class='summary'>{summaries}</ul>"
            "</section>")


def _warning_box(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{_e(line)}</li>" for line in lines)
    return f"<div class='warning'><b>Read with care</b><ul>{items}</ul></div>"


def _attribute_section(audited: AttributeAudit, result: AuditResult,
                       figures: FigureWriter) -> str:
    report = audited.report
    parts = [f"<section id='{_anchor(audited.name)}'><h2>{_e(audited.name)}</h2>",
             f"<p class='lead'>{_e(audited.summary)}</p>",
             "<div class='grid'>", figures(plots.group_auc_figure(report)),
             figures(plots.roc_figure(report)), "</div>",
             "<h3>Fairness metrics</h3>", _headline_table(report),
             "<h3>Groups</h3>", _group_table(report)]
    if report.notes:
        parts.append(_notes(report.notes))
    parts += ["<h3>Loss and similarity distributions</h3>",
              "<p class='hint'>Sinkhorn divergence S and exact W₂²/2 of each group's "
              "distribution to all pairs' (the quantity the fairness-aware fine-tuning pulls "
              "toward 0); p is the share of random relabellings of the groups that give a "
              "W₂²/2 at least as large (small p: more than noise).</p>",
              *(figures(plots.distribution_figure(result.predictions, view))
                for view in audited.distributions),
              _distance_table(audited.distributions, result.config.sinkhorn_max_pairs),
              "</section>"]
    return "\n".join(parts)


def _headline_table(report: AttributeReport) -> str:
    rows = []
    for key, label in HEADLINE_METRICS:
        estimate: Estimate = getattr(report, key)
        if key == "worst_group_auc" and report.worst_group:
            label = f"{label} ({report.worst_group})"
        rows.append((label, _value(estimate.value), _ci(estimate), estimate.note))
    caption = (f"At threshold {report.threshold:.4g} ({report.threshold_method}); "
               f"{report.n} pairs, {report.positives} positive; 95% bootstrap intervals.")
    return _table(("metric", "value", "95% CI", "note"), rows, caption=caption,
                  with_notes=True)


def _group_table(report: AttributeReport) -> str:
    rows = [(g.name, g.n, g.positives, _value(g.auc.value), _ci(g.auc), _value(g.tpr),
             _value(g.fpr), _value(g.selection_rate), _value(g.accuracy),
             "; ".join(dict.fromkeys(filter(None, (g.note, g.auc.note)))))
            for g in report.groups]
    return _table(("group", "n", "positives", "AUC", "95% CI", "TPR", "FPR", "selection rate",
                   "accuracy", "note"), rows, with_notes=True)


def _distance_table(views: Sequence[DistributionView], sinkhorn_max_pairs: int) -> str:
    header = ["group", "n"]
    for view in views:
        header += [f"{view.statistic} mean", f"{view.statistic} S", f"{view.statistic} W₂²/2",
                   f"{view.statistic} p"]
    rows = []
    for position, group in enumerate(views[0].groups):
        row: list[object] = [group.group, group.n]
        for view in views:
            item = view.groups[position]
            row += [_value(item.mean, missing="–"), _value(item.sinkhorn, ".3g", missing="–"),
                    _value(item.w2, ".3g", missing="–"), _value(item.p_value, missing="–")]
        rows.append(row)
    blurs = ", ".join(f"{v.statistic} {v.blur:.3g}" for v in views)
    caption = (f"Sinkhorn blur (ε = blur²): {blurs}; {views[0].n_permutations} permutations "
               f"(p of W₂²/2); population: {views[0].population_n} pairs; – : no pairs.")
    if views[0].population_n > sinkhorn_max_pairs:
        caption += (f" S is solved on summaries of the distributions (population above "
                    f"sinkhorn_max_pairs = {sinkhorn_max_pairs:,}; see Read with care).")
    return _table(header, rows, caption=caption)


def _provenance(result: AuditResult) -> str:
    fingerprints = _table(("what", "fingerprint"), sorted(result.fingerprints.items()))
    versions = _table(("package", "version"), sorted(result.versions.items()))
    prompts = result.model.get("prompts")
    prompt_html = ""
    if prompts:
        prompt_html = "<h3>Prompts</h3>" + _table(
            ("class", "prompt"),
            [(label, text) for label, texts in sorted(prompts.items()) for text in texts])
    config = json.dumps(result.config.to_dict(), indent=2)
    data = (f"<p><b>Data source:</b> {_e(result.data['source'])}</p>"
            + _warning_box(result.data.get("loader_warnings", [])))
    model = (f"<p><b>Model:</b> {_e(result.model['spec'])} ({_e(result.model['arch'])}, "
             f"logit scale {result.model['logit_scale']:.4g}, {_e(result.model['device'])})</p>")
    return ("<section class='provenance'><h2>Provenance</h2>" + data + model + prompt_html
            + "<div class='grid'><div><h3>Fingerprints</h3>" + fingerprints
            + "</div><div><h3>Versions</h3>" + versions + "</div></div>"
            + f"<h3>Configuration</h3><pre>{_e(config)}</pre></section>")


def _notes(notes: Iterable[str]) -> str:
    return "<ul class='notes'>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], *,
           caption: str = "", with_notes: bool = False) -> str:
    """An HTML table; ``with_notes`` styles the last column as notes."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    kind = " class='with-notes'" if with_notes else ""
    return f"<table{kind}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _value(value: float | None, spec: str = ".3f", *, missing: str = "undefined") -> str:
    return missing if value is None else format(value, spec)


def _ci(estimate: Estimate) -> str:
    if estimate.ci_low is None or estimate.ci_high is None:
        return ""
    return f"{estimate.ci_low:.3f} – {estimate.ci_high:.3f}"


def _anchor(name: str) -> str:
    return "attribute-" + "".join(c if c.isalnum() else "-" for c in name)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text.encode("utf-8"))


_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --soft: #f6f8fa; --warn: #fff8c5; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
       font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 21px; margin: 40px 0 8px; padding-bottom: 6px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 8px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }
.facts dt { color: var(--muted); } .facts dd { margin: 0; word-break: break-all; }
.lead { font-size: 15px; background: var(--soft); border-left: 4px solid #4C78A8;
        padding: 10px 14px; margin: 8px 0 16px; }
.hint, caption { color: var(--muted); font-size: 13px; }
caption { caption-side: bottom; text-align: left; padding-top: 4px; }
.summary li { margin-bottom: 6px; }
.warning { background: var(--warn); border: 1px solid #d4a72c66; border-radius: 6px;
           padding: 8px 14px; margin: 12px 0; }
.warning ul, .notes { margin: 4px 0; padding-left: 20px; }
.notes { color: var(--muted); font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 16px; }
@media (max-width: 1000px) { .grid { grid-template-columns: minmax(0, 1fr); } }
.figure { border: 1px solid var(--line); border-radius: 6px; padding: 4px; min-width: 0; }
table { border-collapse: collapse; margin: 4px 0 12px; font-size: 13px;
        font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
tbody tr:hover { background: #f0f4f8; }
.with-notes td:last-child { color: var(--muted); max-width: 460px; }
pre { background: var(--soft); padding: 12px; border-radius: 6px; font-size: 12px;
      overflow-x: auto; }
a { color: #0969da; }
"""
