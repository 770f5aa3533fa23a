"""``fairvlm inspect``: load a data set and print what it holds.

Prints the source statement (which files and columns were used), the loader's warnings, the
counts per split, the counts per split of every group of every attribute, and the groups too
small (or with one class only) for trustworthy metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from fairvlm import paths
from fairvlm.data import PairTable, load_with_attributes
from fairvlm.data.summary import (
    DEFAULT_MIN_GROUP_SIZE,
    OVERALL,
    small_group_warnings,
    summarize,
)
from fairvlm.errors import ConfigError, DataError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``inspect`` sub-command."""
    parser = subparsers.add_parser(
        "inspect", help="print a data set's counts per split and group",
        description="Load a data set and print which files and columns were used, its "
        "warnings, and its counts per split and per group.")
    parser.add_argument("--data", metavar="PATH", help="a Harvard-FairVLMed folder, a "
                        ".csv/.parquet manifest, or a folder with manifest.csv (default: the "
                        "built-in demo data)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse unreadable files instead of skipping them")
    parser.add_argument("--notes-column", metavar="NAME",
                        help="FairVLMed: the note column of the notes CSV")
    parser.add_argument("--attribute", action="append", dest="attributes", metavar="NAME",
                        help="manifest: a protected-attribute column (repeat for several)")
    parser.add_argument("--dicom-tag", action="append", dest="dicom_tags",
                        metavar="COLUMN=KEYWORD",
                        help="manifest: fill COLUMN from a DICOM tag, e.g. sex=PatientSex")
    parser.add_argument("--missing-as-unknown", action="store_true",
                        help="manifest: count blank attribute cells as unknown")
    parser.add_argument("--seed", type=int, help="manifest: seed of the generated split")
    parser.add_argument("--min-group-size", type=int, default=DEFAULT_MIN_GROUP_SIZE,
                        metavar="N", help="flag groups with fewer pairs than N in a split "
                        f"(default {DEFAULT_MIN_GROUP_SIZE})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load ``args.data`` and print its report."""
    path = Path(args.data) if args.data else paths.demo_data_dir()
    if args.data is None and not path.exists():
        raise DataError(f"{path}: no demo data yet; expected it after `fairvlm demo`, or pass "
                        "--data PATH")
    table = load_with_attributes(path, args.attributes or [], **_loader_options(args))
    print(render(table, min_n=args.min_group_size))
    return 0


def render(table: PairTable, *, min_n: int = DEFAULT_MIN_GROUP_SIZE) -> str:
    """The plain-text report ``fairvlm inspect`` prints."""
    summary = summarize(table)
    lines = [f"data set: {table.name}, {len(table)} pairs", f"source: {table.source}"]
    if table.warnings:
        lines += ["warnings:", *(f"  - {warning}" for warning in table.warnings)]
    overall = summary[summary["attribute"] == OVERALL]
    lines += ["", "per split:",
              overall[["split", "n", "positives", "prevalence"]]
              .to_string(index=False, float_format=lambda x: f"{x:.3f}")]
    for name in table.attributes:
        lines += ["", f"{name} (n pairs / positives):", _group_table(summary, name)]
    flagged = small_group_warnings(summary, min_n=min_n)
    if flagged:
        lines += ["", f"groups to read with care (fewer than {min_n} pairs, or one class):",
                  *(f"  - {line}" for line in flagged)]
    return "\n".join(lines)


def _group_table(summary: pd.DataFrame, attribute: str) -> str:
    rows = summary[summary["attribute"] == attribute]
    cells = rows.assign(cell=rows["n"].astype(str) + " / " + rows["positives"].astype(str))
    table = cells.pivot(index="group", columns="split", values="cell")
    order = list(dict.fromkeys(rows["group"]))
    splits = list(dict.fromkeys(rows["split"]))
    table = table.reindex(index=order, columns=splits)
    return table.rename_axis(index=None, columns=None).to_string()


def _loader_options(args: argparse.Namespace) -> dict[str, Any]:
    """Only the options the user gave, so each loader sees what applies to it."""
    options: dict[str, Any] = {}
    if args.strict:
        options["strict"] = True
    if args.notes_column:
        options["notes_column"] = args.notes_column
    if args.dicom_tags:
        options["dicom_tags"] = dict(_parse_tag(item) for item in args.dicom_tags)
    if args.missing_as_unknown:
        options["missing_as_unknown"] = True
    if args.seed is not None:
        options["seed"] = args.seed
    return options


def _parse_tag(item: str) -> tuple[str, str]:
    column, separator, keyword = item.partition("=")
    if not separator or not column.strip() or not keyword.strip():
        raise ConfigError(f"--dicom-tag {item!r}; expected COLUMN=KEYWORD, e.g. "
                          "sex=PatientSex")
    return column.strip(), keyword.strip()
