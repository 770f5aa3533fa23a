"""Counts of a pair table per split and per group: what a user checks before any audit.

For every split and every group g of every attribute (the unknown group included, groups with
no members in a split shown with n = 0):

    n_g = number of pairs,  positives_g = sum of labels,  prevalence_g = positives_g / n_g

(prevalence undefined, NaN, when n_g = 0). One row per split with ``attribute = group =
"all"`` gives the split's totals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fairvlm.data.table import SPLITS, PairTable

OVERALL = "all"
SUMMARY_COLUMNS: tuple[str, ...] = (
    "attribute", "group", "code", "split", "n", "positives", "prevalence",
)
DEFAULT_MIN_GROUP_SIZE = 30


def summarize(table: PairTable, attributes: Sequence[str] | None = None) -> pd.DataFrame:
    """Per split, the totals and the counts of each group of ``attributes`` (default: all).

    Returns
    -------
    pandas.DataFrame
        Columns ``attribute, group, code, split, n, positives, prevalence``; ``code`` is the
        group's integer code (missing for the ``"all"`` rows).
    """
    names = list(table.attributes) if attributes is None else list(attributes)
    frame = table.frame
    split_values = frame["split"].to_numpy()
    labels = table.labels
    rows: list[tuple] = []
    for split in (s for s in SPLITS if (split_values == s).any()):
        in_split = split_values == split
        rows.append((OVERALL, OVERALL, pd.NA, split, *_counts(labels[in_split])))
        for name in names:
            attribute = table.attribute(name)
            codes = table.group_codes(name)
            for code in _group_codes(attribute.groups, codes, attribute.unknown_code):
                members = in_split & (codes == code)
                rows.append((name, attribute.group_name(code), code, split,
                             *_counts(labels[members])))
    summary = pd.DataFrame(rows, columns=[c for c in SUMMARY_COLUMNS if c != "prevalence"])
    summary["code"] = summary["code"].astype("Int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        summary["prevalence"] = np.where(summary["n"] > 0,
                                         summary["positives"] / summary["n"].clip(lower=1),
                                         np.nan)
    return summary


def small_group_warnings(summary: pd.DataFrame, *,
                         min_n: int = DEFAULT_MIN_GROUP_SIZE) -> list[str]:
    """One line per (group, split) whose metrics would be undefined or noise-level.

    A group is flagged when it has no pairs in a split, when it has only one class there
    (its AUC is undefined), or when it has fewer than ``min_n`` pairs.
    """
    lines = []
    for row in summary[summary["attribute"] != OVERALL].itertuples(index=False):
        where = f"{row.attribute}={row.group} in {row.split}"
        if row.n == 0:
            lines.append(f"{where}: no pairs")
        elif row.positives in (0, row.n):
            lines.append(f"{where}: n={row.n}, positives={row.positives}; one class only, "
                         "so its AUC is undefined")
        elif row.n < min_n:
            lines.append(f"{where}: n={row.n} (below {min_n}); its metrics are noise-level")
    return lines


def _counts(labels: np.ndarray) -> tuple[int, int]:
    return int(labels.size), int(labels.sum())


def _group_codes(groups, codes: np.ndarray, unknown_code: int) -> list[int]:
    """Named groups and codes seen in the data, sorted, the unknown code last if present."""
    known = sorted(({int(c) for c in groups} | {int(c) for c in np.unique(codes)})
                   - {unknown_code})
    return known + ([unknown_code] if (codes == unknown_code).any() else [])
