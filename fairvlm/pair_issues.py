"""Bad-pair detectors of one checkpoint, with a uniform (cleanlab-like) output contract.

Input: the pair scores of :func:`score_pairs`, one row per pair of any split: ``id, split,
label``, the within-split scores of :func:`fairvlm.scoring.pair_scores` (``similarity, loss,
rank, margin``, and ``negatives, sampled``: how many other notes they are computed against and
whether those are a random sample of a large split, the rank then an estimate), and the
zero-shot ``p(glaucoma)`` of the image (``image_probability``) and of the note
(``note_probability``: the note's text embedding scored against the same class prompts as the
image, so it is the class the note states).

Output of :func:`find_pair_issues`: one row per pair, keyed by ``id``; for every issue kind a
``<kind>_score`` (higher = more suspicious) and a boolean ``is_<kind>_issue``. Below, within
each split s of ``n_s`` pairs, ``pct(x)`` is the percentile rank of ``x`` among the split's
pairs (``rank / n_s`` with average ranks for ties, so in ``(0, 1]``; pairs without a value
are left out).

``mismatch``
    The note likely does not describe the image::

        mismatch_score = (pct(loss) + pct(-similarity) + pct(rank)) / 3

``label_disagreement``
    The note states one class and the image shows the other, confidently. With
    ``p = image_probability`` and ``q = note_probability``::

        label_disagreement_score = p (1 - q) + q (1 - p)

    the probability that independent draws from the two predictions disagree. Flagged when
    ``>= c^2 + (1 - c)^2`` for ``confidence`` c: a disagreement at least as confident as one
    prediction giving a class probability c and the other 1 - c. The bound is ``>= 1/2``, so
    the two hard predictions of a flagged pair always differ.

``bad_pair``
    The combined ranking, a rank average over the evidence available for the pair::

        bad_pair_score = mean_k pct(e_k),   e = (z, rank, label_disagreement_score)

    where ``z = (m_i - mu) / sigma`` is DBPM's loss-history z-score (:func:`fairvlm.mining.
    flagged_pairs`), present only when a loss memory is given and holds the pair (training
    pairs of the run); without it the mean is over the other two.

``mismatch`` and ``bad_pair`` are quantile flags: the ``ceil(q n_s)`` highest scores of each
split s are flagged (``q = flag_fraction``; pairs tied with the last of them too).

With a memory, DBPM's own kinds follow (NaN scores and no flag for pairs it does not hold):
``faulty_score``/``is_faulty_issue`` (``z``, flagged at ``z >= beta_fp``),
``noisy_score``/``is_noisy_issue`` (``-z``, flagged at ``-z >= beta_np``), the first epochs
that flagged them and ``dbpm_mean_loss`` (``m_i``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairvlm.data.table import PairTable
from fairvlm.errors import ConfigError, DataError
from fairvlm.mining import LossMemory, flagged_pairs
from fairvlm.models.loading import LoadedModel
from fairvlm.scoring import (
    CLASS_NAMES,
    SCORE_COLUMNS,
    check_prompts,
    compute_embeddings,
    pair_scores,
    zero_shot_probabilities,
)
from fairvlm.scoring.pairs import MAX_NEGATIVES

KINDS: tuple[str, ...] = ("mismatch", "label_disagreement", "bad_pair")
DBPM_KINDS: tuple[str, ...] = ("faulty", "noisy")
SCORE_INPUTS: tuple[str, ...] = ("id", "split", "similarity", "loss", "rank",
                                 "image_probability", "note_probability")
_DBPM_COLUMNS = {"mean_loss": "dbpm_mean_loss", "faulty_score": "faulty_score",
                 "is_faulty_issue": "is_faulty_issue", "noisy_score": "noisy_score",
                 "is_noisy_issue": "is_noisy_issue", "faulty_first_epoch": "faulty_first_epoch",
                 "noisy_first_epoch": "noisy_first_epoch"}


@dataclass(frozen=True)
class IssueSettings:
    """Flag thresholds of the detectors (see the module docstring).

    Parameters
    ----------
    flag_fraction
        q: the share of each split flagged as ``mismatch`` and as ``bad_pair``, in (0, 1).
    confidence
        c: flag a label disagreement at ``score >= c^2 + (1 - c)^2``, in [0.5, 1).
    """

    flag_fraction: float = 0.05
    confidence: float = 0.8

    def __post_init__(self) -> None:
        if not 0 < self.flag_fraction < 1:
            raise ConfigError(f"pair issues field flag_fraction: {self.flag_fraction!r}; "
                              "expected a number between 0 and 1 (exclusive)")
        if not 0.5 <= self.confidence < 1:
            raise ConfigError(f"pair issues field confidence: {self.confidence!r}; "
                              "expected a number in [0.5, 1)")

    @property
    def disagreement_threshold(self) -> float:
        """``c^2 + (1 - c)^2``, the flag threshold of ``label_disagreement_score``."""
        return self.confidence**2 + (1 - self.confidence) ** 2


def score_pairs(loaded: LoadedModel, table: PairTable, *,
                prompts: Mapping[int, Sequence[str]] | None = None,
                use_logit_scale: bool = True, max_negatives: int = MAX_NEGATIVES,
                progress: bool = False) -> pd.DataFrame:
    """The detectors' input for every pair of ``table``, in table order.

    Columns ``id, split, label, similarity, loss, rank, margin, negatives, sampled`` (within
    each split, see :func:`fairvlm.scoring.pair_scores`: a split of more than
    ``max_negatives + 1`` pairs is scored against a seeded sample of ``max_negatives``
    negatives), ``image_probability`` and ``note_probability`` (zero-shot ``p(glaucoma)`` of
    the image and of the note with ``prompts``, default the model's). Embeddings come from the
    on-disk cache when present.

    Raises
    ------
    ConfigError
        Empty or malformed prompts.
    """
    checked = check_prompts(prompts or loaded.default_prompts)
    embeddings = compute_embeddings(loaded, table, progress=progress)
    splits = table.frame["split"].to_numpy()
    parts = [pair_scores(embeddings, table, split=split, max_negatives=max_negatives)
             .set_index(table.split_indices(split)) for split in pd.unique(splits)]
    scores = pd.concat(parts).sort_index()
    frame = pd.DataFrame({"id": table.ids.astype(str), "split": splits,
                          "label": table.labels})
    for column in SCORE_COLUMNS[1:]:
        frame[column] = scores[column].to_numpy()
    frame["image_probability"] = zero_shot_probabilities(
        loaded, embeddings.image, checked, use_logit_scale=use_logit_scale)
    frame["note_probability"] = zero_shot_probabilities(
        loaded, embeddings.text, checked, use_logit_scale=use_logit_scale)
    return frame


def find_pair_issues(scores: pd.DataFrame, *, memory: LossMemory | None = None,
                     settings: IssueSettings | None = None) -> pd.DataFrame:
    """Every detector of the module docstring on ``scores`` (:func:`score_pairs` output).

    Returns one row per row of ``scores``, in its order: ``id``, then ``<kind>_score`` and
    ``is_<kind>_issue`` for ``mismatch``, ``label_disagreement``, and with ``memory`` the DBPM
    columns, then ``bad_pair``.

    Raises
    ------
    DataError
        ``scores`` lacks a column, or ``memory`` holds none of its pair ids (a run trained on
        other data).
    """
    settings = settings or IssueSettings()
    missing = [column for column in SCORE_INPUTS if column not in scores.columns]
    if missing:
        raise DataError(f"pair scores: missing column(s) {', '.join(missing)}; expected "
                        f"{', '.join(SCORE_INPUTS)}")
    issues = pd.DataFrame({"id": scores["id"].astype(str).to_numpy()})
    issues["mismatch_score"] = mismatch_scores(scores)
    issues["is_mismatch_issue"] = top_fraction(issues["mismatch_score"], scores["split"],
                                               settings.flag_fraction)
    issues["label_disagreement_score"] = disagreement_scores(
        scores["image_probability"], scores["note_probability"])
    issues["is_label_disagreement_issue"] = (issues["label_disagreement_score"]
                                             >= settings.disagreement_threshold)
    evidence = [scores["rank"].to_numpy(dtype=np.float64),
                issues["label_disagreement_score"].to_numpy()]
    if memory is not None:
        dbpm = dbpm_issues(memory, issues["id"])
        issues = pd.concat([issues, dbpm], axis=1)
        evidence.insert(0, dbpm["faulty_score"].to_numpy(dtype=np.float64))
    issues["bad_pair_score"] = _rank_average(evidence, scores["split"])
    issues["is_bad_pair_issue"] = top_fraction(issues["bad_pair_score"], scores["split"],
                                               settings.flag_fraction)
    return issues


def mismatch_scores(scores: pd.DataFrame) -> np.ndarray:
    """``(pct(loss) + pct(-similarity) + pct(rank)) / 3`` within each split."""
    return _rank_average([scores["loss"].to_numpy(dtype=np.float64),
                          -scores["similarity"].to_numpy(dtype=np.float64),
                          scores["rank"].to_numpy(dtype=np.float64)], scores["split"])


def disagreement_scores(image_probability: Sequence[float] | np.ndarray,
                        note_probability: Sequence[float] | np.ndarray) -> np.ndarray:
    """``p (1 - q) + q (1 - p)``: the chance two draws from the predictions disagree."""
    p = np.asarray(image_probability, dtype=np.float64)
    q = np.asarray(note_probability, dtype=np.float64)
    return p * (1 - q) + q * (1 - p)


def top_fraction(values: pd.Series | np.ndarray, splits: pd.Series | np.ndarray,
                 fraction: float) -> np.ndarray:
    """Whether each value is among the ``ceil(fraction n_s)`` highest of its split s.

    Ties with the last flagged value are flagged too; NaN values never are.
    """
    frame = pd.DataFrame({"value": np.asarray(values, dtype=np.float64),
                          "split": np.asarray(splits)})
    descending = frame.groupby("split")["value"].rank(ascending=False, method="min")
    size = frame.groupby("split")["value"].transform("count")
    quota = np.ceil(fraction * size.to_numpy())
    return (descending.to_numpy() <= quota) & frame["value"].notna().to_numpy()


def dbpm_issues(memory: LossMemory, ids: Sequence[str] | pd.Series) -> pd.DataFrame:
    """DBPM's verdict after the last recorded epoch for ``ids``, row-aligned with them.

    Raises
    ------
    DataError
        If the memory holds none of ``ids``.
    """
    verdict = flagged_pairs(memory, include_unflagged=True).set_index("id")
    wanted = pd.Index(np.asarray(ids, dtype=str))
    if not wanted.isin(verdict.index).any():
        raise DataError(f"DBPM memory of {len(memory)} training pairs holds none of the "
                        f"{len(wanted)} pair ids of this data set; expected a run trained on it")
    aligned = verdict.reindex(wanted).rename(columns=_DBPM_COLUMNS)
    for kind in DBPM_KINDS:
        flag = f"is_{kind}_issue"
        aligned[flag] = aligned[flag].astype("boolean").fillna(False).astype(bool)
    return aligned[list(_DBPM_COLUMNS.values())].reset_index(drop=True)


def issue_columns(kinds: Sequence[str]) -> list[str]:
    """``is_<kind>_issue`` for every kind."""
    return [f"is_{kind}_issue" for kind in kinds]


def explain(row: Mapping[str, object], settings: IssueSettings | None = None) -> list[str]:
    """Why the pair ``row`` (a row of scores joined with issues) is flagged, one line a kind."""
    settings = settings or IssueSettings()
    share = f"{settings.flag_fraction:.0%}"
    reasons = []
    if row.get("is_mismatch_issue"):
        sampled = (f", estimated from {int(row['negatives']):,} sampled notes"
                   if row.get("sampled") else "")
        reasons.append(
            f"Mismatch: among the top {share} of its split by loss ({float(row['loss']):.3g}), "
            f"low similarity ({float(row['similarity']):.3f}) and true-note rank "
            f"({int(row['rank']):,}{sampled}).")
    if row.get("is_label_disagreement_issue"):
        image, note = float(row["image_probability"]), float(row["note_probability"])
        reasons.append(
            f"Label disagreement: the note reads as {_class_of(note)} (p(glaucoma) "
            f"{note:.2f}) but the image as {_class_of(image)} ({image:.2f}).")
    for kind, direction in (("faulty", "above"), ("noisy", "below")):
        if row.get(f"is_{kind}_issue"):
            first = row.get(f"{kind}_first_epoch")
            since = "" if first is None or pd.isna(first) else f", flagged from epoch {first}"
            reasons.append(
                f"DBPM {kind}: its weighted mean training loss "
                f"{float(row['dbpm_mean_loss']):.3g} is {float(row[f'{kind}_score']):.2f} "
                f"standard deviations {direction} the mean{since}.")
    if row.get("is_bad_pair_issue"):
        reasons.append(f"Combined: bad-pair score {float(row['bad_pair_score']):.2f}, among "
                       f"the top {share} of its split.")
    return reasons


def _class_of(probability: float) -> str:
    return CLASS_NAMES[int(probability >= 0.5)]


def _rank_average(evidence: list[np.ndarray], splits: pd.Series | np.ndarray) -> np.ndarray:
    """Mean over the evidence arrays of their within-split percentile ranks (NaN skipped)."""
    frame = pd.DataFrame({f"e{k}": values for k, values in enumerate(evidence)})
    ranks = frame.groupby(np.asarray(splits)).rank(pct=True, method="average")
    with np.errstate(invalid="ignore"):
        return ranks.mean(axis=1, skipna=True).to_numpy(dtype=np.float64)
