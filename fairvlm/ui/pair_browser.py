"""The bad-pair browser's data: one cached frame of every pair with its scores and issues, and
vectorised filtering, sorting and paging over it.

The frame (:func:`browser_frame`) joins the pair table (id, split, image, note, label,
attribute codes), the checkpoint's pair scores (:func:`fairvlm.pair_issues.score_pairs`) and
the detectors' issues (:func:`fairvlm.pair_issues.find_pair_issues`, with DBPM's when a run is
chosen). It is built once per (data, model, prompts, run, flag settings) and shared read-only;
a filter, a sort or a page turn works on row positions (numpy), so only the rows of the current
page are ever copied: this keeps a rerun fast at 100,000 pairs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from fairvlm.data import PairTable
from fairvlm.data.table import Attribute
from fairvlm.errors import DataError
from fairvlm.mining import LossMemory, Verdict
from fairvlm.models import LoadedModel
from fairvlm.pair_issues import IssueSettings, find_pair_issues, score_pairs

ANY_FLAG = "any"
ALL_PAIRS = "all"
FLAG_KINDS: dict[str, str] = {
    ANY_FLAG: "any flag",
    "bad_pair": "combined bad-pair score",
    "mismatch": "mismatch (note does not fit the image)",
    "label_disagreement": "label disagreement (note vs image)",
    "faulty": "DBPM faulty (high loss history)",
    "noisy": "DBPM noisy (low loss history)",
    ALL_PAIRS: "all pairs",
}
SORT_COLUMNS: dict[str, str] = {
    "bad_pair_score": "bad-pair score",
    "mismatch_score": "mismatch score",
    "label_disagreement_score": "label disagreement",
    "faulty_score": "DBPM loss-history z",
    "loss": "loss",
    "similarity": "similarity",
    "rank": "true-note rank",
    "margin": "margin",
}
TABLE_COLUMNS: tuple[str, ...] = ("id", "split", "image", "text", "label")


@dataclass(frozen=True)
class RunEvidence:
    """A finished run's DBPM memory, its loss history ``[N, E]`` and its verdict after the last
    recorded epoch."""

    memory: LossMemory
    history: np.ndarray
    final: Verdict


@dataclass(frozen=True)
class PairFilter:
    """Which pairs to list. ``None`` (or :data:`ALL_PAIRS` for ``kind``) matches every pair.

    ``kind`` keeps pairs flagged as that issue kind (:data:`ANY_FLAG`: as any kind);
    ``group`` is a group code of ``attribute``; ``score_range`` bounds ``score_column``
    (inclusive; a pair without that score is left out).
    """

    kind: str = ANY_FLAG
    split: str | None = None
    label: int | None = None
    attribute: str | None = None
    group: int | None = None
    score_column: str | None = None
    score_range: tuple[float, float] | None = None


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_scores(data_fingerprint: str, model_fingerprint: str, prompts_json: str,
                  _table: PairTable, _loaded: LoadedModel) -> pd.DataFrame:
    """:func:`fairvlm.pair_issues.score_pairs` of the table and model (read-only)."""
    prompts = {int(label): texts for label, texts in json.loads(prompts_json).items()}
    return score_pairs(_loaded, _table, prompts=prompts or None)


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_run(memory_path: str, stamp: int) -> RunEvidence:
    """The run's DBPM memory (``stamp``, its modification time, only keys the cache)."""
    memory = LossMemory.load(memory_path)
    return RunEvidence(memory, memory.history, memory.assess(memory.epochs_recorded))


@st.cache_resource(max_entries=4, show_spinner=False)
def cached_frame(data_fingerprint: str, model_fingerprint: str, prompts_json: str,
                 run: tuple[str, int], flag_fraction: float, confidence: float,
                 _table: PairTable, _scores: pd.DataFrame,
                 _run: RunEvidence | None) -> pd.DataFrame:
    """:func:`browser_frame`, keyed by what it is computed from (read-only); ``run`` is
    :func:`run_key` of the run's memory."""
    return browser_frame(_table, _scores, memory=_run.memory if _run else None,
                         settings=IssueSettings(flag_fraction, confidence))


def prompts_key(prompts: Mapping[int, Sequence[str]] | None) -> str:
    """Canonical JSON of the prompts (a cache key part)."""
    return json.dumps({str(k): list(v) for k, v in sorted((prompts or {}).items())},
                      sort_keys=True)


def run_key(memory_path: Path | None) -> tuple[str, int]:
    """``(path, modification time in ns)`` of a run's memory, or ``("", 0)`` for none."""
    if memory_path is None:
        return "", 0
    return str(memory_path), memory_path.stat().st_mtime_ns


def browser_frame(table: PairTable, scores: pd.DataFrame, *, memory: LossMemory | None,
                  settings: IssueSettings) -> pd.DataFrame:
    """Table columns, scores and issues side by side, one row per pair in table order.

    Raises
    ------
    DataError
        ``scores`` are not this table's pairs in order, or ``memory`` holds none of them.
    """
    if not np.array_equal(scores["id"].astype(str).to_numpy(), table.ids.astype(str)):
        raise DataError(f"{table.name}: the pair scores belong to another table; recompute "
                        "them")
    issues = find_pair_issues(scores, memory=memory, settings=settings)
    frame = table.frame[[*TABLE_COLUMNS, *table.attributes]].reset_index(drop=True)
    frame = frame.assign(id=frame["id"].astype(str))
    extra_scores = scores.drop(columns=["id", "split", "label"])
    return pd.concat([frame, extra_scores.reset_index(drop=True),
                      issues.drop(columns="id")], axis=1)


def flag_kinds(frame: pd.DataFrame) -> list[str]:
    """The issue kinds this frame has flag columns for (DBPM kinds only with a run)."""
    return [kind for kind in FLAG_KINDS
            if kind in (ANY_FLAG, ALL_PAIRS) or f"is_{kind}_issue" in frame.columns]


def flag_mask(frame: pd.DataFrame, kind: str) -> np.ndarray:
    """Which pairs are flagged as ``kind`` (:data:`ANY_FLAG`: as any kind; all for
    :data:`ALL_PAIRS`)."""
    if kind == ALL_PAIRS:
        return np.ones(len(frame), dtype=bool)
    columns = ([c for c in frame.columns if c.startswith("is_") and c.endswith("_issue")]
               if kind == ANY_FLAG else [f"is_{kind}_issue"])
    return frame[columns].to_numpy(dtype=bool).any(axis=1)


def scope_mask(frame: pd.DataFrame, chosen: PairFilter) -> np.ndarray:
    """The pairs matching ``chosen``'s split, label and score range (not kind, not group)."""
    keep = np.ones(len(frame), dtype=bool)
    if chosen.split is not None:
        keep &= frame["split"].to_numpy() == chosen.split
    if chosen.label is not None:
        keep &= frame["label"].to_numpy() == chosen.label
    if chosen.score_column is not None and chosen.score_range is not None:
        values = frame[chosen.score_column].to_numpy(dtype=np.float64)
        low, high = chosen.score_range
        with np.errstate(invalid="ignore"):
            keep &= (values >= low) & (values <= high)
    return keep


def select(frame: pd.DataFrame, chosen: PairFilter) -> np.ndarray:
    """Row positions of the pairs matching every part of ``chosen``, in table order."""
    keep = scope_mask(frame, chosen) & flag_mask(frame, chosen.kind)
    if chosen.attribute is not None and chosen.group is not None:
        keep &= frame[chosen.attribute].to_numpy() == chosen.group
    return np.flatnonzero(keep)


def order(frame: pd.DataFrame, positions: np.ndarray, column: str, *,
          descending: bool = True) -> np.ndarray:
    """``positions`` sorted by ``column`` (stable; pairs without a value last)."""
    values = frame[column].to_numpy(dtype=np.float64)[positions]
    keys = -values if descending else values
    return positions[np.argsort(np.where(np.isnan(keys), np.inf, keys), kind="stable")]


def page_count(n: int, size: int) -> int:
    """Pages of ``size`` rows needed for ``n`` rows (at least 1)."""
    return max(1, -(-n // size))


def page(positions: np.ndarray, number: int, size: int) -> np.ndarray:
    """The positions on page ``number`` (1-based) of ``size`` rows."""
    start = (number - 1) * size
    return positions[start:start + size]


def group_makeup(frame: pd.DataFrame, scope: np.ndarray, flagged: np.ndarray,
                 attribute: Attribute) -> pd.DataFrame:
    """Groups of the flagged pairs against the base rate, within the pairs in ``scope``.

    For group g of ``attribute``, with ``n_g`` pairs in scope of which ``f_g`` are flagged:
    ``flag rate = f_g / n_g``, ``share of flagged = f_g / sum_h f_h`` and
    ``share of all = n_g / sum_h n_h`` (the base rate). A group over-represented among the
    flagged pairs has ``share of flagged > share of all``. Ratios without a denominator are
    NaN.
    """
    codes = frame[attribute.name].to_numpy()[scope]
    marked = flagged[scope]
    present = np.unique(codes)
    n = np.array([np.count_nonzero(codes == code) for code in present])
    f = np.array([np.count_nonzero(marked & (codes == code)) for code in present])
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({
            "group": [attribute.group_name(int(code)) for code in present],
            "n": n, "flagged": f,
            "flag rate": f / n,
            "share of flagged": f / f.sum() if f.sum() else np.full(len(f), np.nan),
            "share of all": n / n.sum() if n.sum() else np.full(len(n), np.nan),
        })
