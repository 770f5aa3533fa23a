"""``fairvlm mine``: print and export the pairs DBPM flagged in a fine-tune run.

Reads the run's ``memory.npz`` (per-pair loss history) and ``config.json`` (data set and
attribute), judges every training pair from its whole loss history
(:func:`fairvlm.mining.flagged_pairs`) and lists the flagged ones, most suspicious first:

``id, kind, score, first_flagged_epoch, mean_loss, group, label, text``

``kind`` is ``faulty`` (abnormally high loss: the note may belong to another image) or
``noisy`` (abnormally low loss: a trivial match); ``score`` is how many standard deviations the
pair's time-weighted mean loss lies beyond the population mean on that side. A ``.csv`` or
``.json`` export can be passed back to ``fairvlm train --exclude``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from fairvlm.errors import ConfigError, DataError

EXPORT_SUFFIXES: tuple[str, ...] = (".csv", ".json")
COLUMNS: tuple[str, ...] = ("id", "kind", "score", "first_flagged_epoch", "mean_loss", "group",
                            "label", "text")
_PRINTED_TEXT = 60


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mine`` sub-command."""
    parser = subparsers.add_parser(
        "mine", help="list the bad pairs DBPM flagged in a fine-tune run",
        description="Print (and export) the image-text pairs whose loss history DBPM found "
        "abnormal in a fine-tune run: faulty (high loss) and noisy (low loss) pairs.")
    parser.add_argument("--run-dir", dest="run_dir", type=Path, required=True, metavar="DIR")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="also write the list to FILE (.csv or .json)")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Print the flagged pairs; export them when ``--out`` is given."""
    if args.out is not None and args.out.suffix.lower() not in EXPORT_SUFFIXES:
        raise ConfigError(f"--out {args.out}: expected a file ending in "
                          f"{' or '.join(EXPORT_SUFFIXES)}")
    table = flagged_pair_table(args.run_dir)
    if table.empty:
        print(f"{args.run_dir}: DBPM flagged no pairs")
    else:
        shown = table.assign(text=table["text"].str.slice(0, _PRINTED_TEXT))
        print(shown.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        counts = table["kind"].value_counts()
        print(f"{counts.get('faulty', 0)} faulty and {counts.get('noisy', 0)} noisy pairs")
    if args.out is not None:
        export(table, args.out)
        print(f"written: {args.out}")
    return 0


def flagged_pair_table(run_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The flagged pairs of a run with their group, label and note (columns :data:`COLUMNS`).

    Raises
    ------
    DataError
        The folder is not a fine-tune run, or has no ``memory.npz`` yet.
    """
    from fairvlm.data import load_with_attributes
    from fairvlm.mining import LossMemory, flagged_pairs
    from fairvlm.runs import RunDir
    from fairvlm.train.config import TrainConfig

    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise DataError(f"{run.path}: not a fine-tune run (no config.json)")
    config = TrainConfig.from_json(run.config_path.read_text(), source=str(run.config_path))
    memory = LossMemory.load(run.memory_path)
    flagged = flagged_pairs(memory)
    data = load_with_attributes(config.data, [config.attribute])
    attribute = data.attribute(config.attribute)
    rows = data.frame.set_index(data.frame["id"].astype(str)).loc[flagged["id"].astype(str)]
    faulty = flagged["is_faulty_issue"]
    return pd.DataFrame({
        "id": flagged["id"].astype(str),
        "kind": faulty.map({True: "faulty", False: "noisy"}),
        "score": flagged["faulty_score"].where(faulty, flagged["noisy_score"]),
        "first_flagged_epoch": flagged["faulty_first_epoch"].where(
            faulty, flagged["noisy_first_epoch"]),
        "mean_loss": flagged["mean_loss"],
        "group": attribute.names(rows[config.attribute].to_numpy()),
        "label": rows["label"].to_numpy(dtype=int),
        "text": rows["text"].to_numpy(),
    }, columns=list(COLUMNS))


def export(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` as CSV or as a JSON list of records (one object per pair)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_json(path, orient="records", indent=2)
