"""``fairvlm compare``: audit two or more models on the same data and compare them.

The first ``--model`` is the baseline. A ``--model`` may also be a finished fine-tune's run
folder: its selected checkpoint is compared under the label ``run NAME``. Writes
``report.html`` and ``comparison.json`` into ``--out`` (:mod:`fairvlm.compare`, the Compare
page's download) and prints, per attribute, each model's metrics and every change from the
baseline with its paired 95% interval (both models on the same resamples of the same pairs),
marked ``better`` or ``worse`` only when the interval excludes 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairvlm.cli.audit import (
    MODEL_SPECS,
    add_audit_options,
    add_data_option,
    audit_config,
    load_table,
    text_table,
)
from fairvlm.errors import ConfigError

if TYPE_CHECKING:
    from fairvlm.compare import Comparison


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` sub-command."""
    parser = subparsers.add_parser(
        "compare", help="compare two or more models' fairness on the same data",
        description="Audit every model on the same split (the first is the baseline) and "
        "write report.html and comparison.json: AUC, ES-AUC, DPD, DEOdds and group AUCs per "
        "attribute with bootstrap intervals, and each change from the baseline with a paired "
        "interval, called better or worse only when the interval excludes 0.")
    add_data_option(parser)
    parser.add_argument("--model", action="append", dest="models", metavar="SPEC",
                        required=True,
                        help=f"{MODEL_SPECS}, or a finished run's folder; repeat, the first "
                        "is the baseline")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True,
                        help="folder to write report.html and comparison.json")
    add_audit_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Audit every model, compare, write the files and print the table."""
    from fairvlm.audit import run_audit
    from fairvlm.compare import ComparedModel, compare, numbered_labels, write_comparison
    from fairvlm.models import load_model

    if len(args.models) < 2:
        raise ConfigError(f"--model: {len(args.models)} given; expected two or more (the "
                          "first is the baseline)")
    config = audit_config(args)
    table = load_table(args.data, config)
    resolved = [_resolve(spec) for spec in args.models]
    labels = numbered_labels([label for label, _, _ in resolved])
    models = []
    for label, (_, spec, origin) in zip(labels, resolved, strict=True):
        loaded = load_model(spec, device=args.device)
        models.append(ComparedModel(label, spec, run_audit(table, loaded, config,
                                                           progress=not args.quiet), origin))
    comparison = compare(models)
    html_path, json_path = write_comparison(comparison, args.out)
    print(render_summary(comparison))
    print(f"\nwrote {html_path}\n      {json_path}")
    return 0


def _resolve(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``(label, model spec, origin)`` of a ``--model`` value: a finished run's folder gives
    its selected checkpoint, anything else is a model spec."""
    from fairvlm.compare import run_origin, short_label
    from fairvlm.jobs import finished_run

    if not Path(spec).is_dir():
        return short_label(spec), spec, {"kind": "model"}
    run = finished_run(spec)
    if run is None:
        raise ConfigError(f"{spec}: a folder that is not a finished run (no eval.json naming "
                          "an existing checkpoint); expected a done fine-tune's run folder or "
                          "a model spec")
    return f"run {run.name}", str(run.checkpoint), run_origin(run)


def render_summary(comparison: Comparison) -> str:
    """Per attribute, each model's values and the changes from the baseline (``better`` /
    ``worse`` when measurable), then the reasons for undefined values."""
    import pandas as pd

    table = comparison.side_by_side()
    improvement = comparison.improvement()
    lines = [f"split {comparison.baseline.result.config.split}; baseline "
             f"{comparison.baseline.label}; values with 95% bootstrap intervals, changes with "
             "paired 95% intervals (the pairs' sampling noise, not training randomness)"]
    for attribute in comparison.attributes:
        rows = table[table["attribute"] == attribute]
        header = tuple(str(column) for column in rows.columns if column != "attribute")
        body = []
        for position, row in rows.iterrows():
            cells = []
            for column in header:
                value = row[column]
                missing = pd.isna(value)
                text = "–" if missing else str(value)
                if column in improvement.columns and not missing:
                    better = improvement.at[position, column]
                    text += {True: " better", False: " worse"}.get(better, "")
                cells.append(text)
            body.append(tuple(cells))
        lines += ["", attribute, *text_table([header, *body])]
    lines += [f"undefined: {line}" for line in comparison.undefined_reasons()]
    lines += [f"note: {line}" for line in comparison.value_notes()]
    return "\n".join(lines)
