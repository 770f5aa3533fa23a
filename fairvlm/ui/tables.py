"""Reshape :func:`fairvlm.data.summarize` output into the count tables the data page shows.

For a split s (or all splits pooled) and group g: ``n_g`` and ``positives_g`` are summed over
the chosen splits, ``prevalence_g = positives_g / n_g`` (NaN when ``n_g = 0``) and
``share_g = n_g / sum_h n_h`` over the attribute's groups (unknown included).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairvlm.data.summary import OVERALL
from fairvlm.data.table import SPLITS

ALL_SPLITS = "all splits"
SPLIT_CHOICES: tuple[str, ...] = (ALL_SPLITS, *SPLITS)


def split_counts(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per split and a total row: ``split, n, positives, prevalence``."""
    rows = summary[summary["attribute"] == OVERALL][["split", "n", "positives"]]
    total = pd.DataFrame([{"split": "total", "n": rows["n"].sum(),
                           "positives": rows["positives"].sum()}])
    table = pd.concat([rows, total], ignore_index=True)
    table["prevalence"] = _ratio(table["positives"], table["n"])
    return table


def group_counts(summary: pd.DataFrame, attribute: str, split: str) -> pd.DataFrame:
    """Groups of ``attribute`` in ``split`` (or :data:`ALL_SPLITS` pooled), in summary order.

    Columns ``group, n, positives, prevalence, share``.
    """
    rows = summary[summary["attribute"] == attribute]
    if split != ALL_SPLITS:
        rows = rows[rows["split"] == split]
    pooled = rows.groupby(["code", "group"], sort=False, dropna=False)[["n", "positives"]].sum()
    table = pooled.reset_index().drop(columns="code")
    table["prevalence"] = _ratio(table["positives"], table["n"])
    table["share"] = _ratio(table["n"], pd.Series(table["n"].sum(), index=table.index))
    return table


def in_split(summary: pd.DataFrame, split: str) -> pd.DataFrame:
    """The summary rows of ``split`` (all rows for :data:`ALL_SPLITS`)."""
    return summary if split == ALL_SPLITS else summary[summary["split"] == split]


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    values = np.divide(numerator.to_numpy(dtype=float), denominator.to_numpy(dtype=float),
                       out=np.full(len(numerator), np.nan), where=denominator.to_numpy() > 0)
    return pd.Series(values, index=numerator.index)
