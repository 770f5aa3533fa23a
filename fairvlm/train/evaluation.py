"""Evaluation during a fine-tune: zero-shot on a split, and model selection on validation.

A split is scored the way an audit scores it (METHOD.md section 5): ``p(glaucoma)`` is the
zero-shot probability from the model's default class prompts
(:func:`fairvlm.scoring.zero_shot_probabilities`, logit-scaled), and the report of the run's
attribute comes from :func:`fairvlm.metrics.audit_attribute` (AUC, ES-AUC
``= AUC / (1 + sum_g |AUC_g - AUC|)``, group AUCs, DEOdds ...). The epoch with the best
validation value of the selection metric is selected; the test split is scored once, with
that epoch's weights, and once with the starting model's, for the change the fine-tune made
(:func:`change_from_start`: paired bootstrap intervals, measurable or within noise).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairvlm.data.table import Attribute, PairTable
from fairvlm.metrics import AttributeReport, PairedChanges, audit_attribute, paired_changes
from fairvlm.models.loading import LoadedModel
from fairvlm.scoring import zero_shot_probabilities


def zero_shot_report(loaded: LoadedModel, image_embeddings: np.ndarray, split: PairTable,
                     attribute: Attribute, prompts: Mapping[int, Sequence[str]], *,
                     min_n: int, n_bootstrap: int = 0, seed: int = 0) -> AttributeReport:
    """The attribute's metric report of zero-shot scores on ``split``.

    Parameters
    ----------
    loaded
        The model (its current weights) with its tokenizer, for the class prompts.
    image_embeddings
        Unit image embeddings of ``split``'s pairs, row-aligned with ``split``.
    split
        The pairs scored (one split of the run's table).
    attribute
        The run's protected attribute.
    prompts
        Class -> prompt list (0 = no glaucoma, 1 = glaucoma).
    min_n, n_bootstrap, seed
        As in :func:`fairvlm.metrics.audit_attribute` (the fixed 0.5 threshold is used).
    """
    return attribute_report(split, attribute,
                            zero_shot_probabilities(loaded, image_embeddings, prompts),
                            min_n=min_n, n_bootstrap=n_bootstrap, seed=seed)


def attribute_report(split: PairTable, attribute: Attribute, probabilities: np.ndarray, *,
                     min_n: int, n_bootstrap: int = 0, seed: int = 0) -> AttributeReport:
    """The attribute's metric report of ``probabilities`` (row-aligned with ``split``) at the
    fixed 0.5 threshold (:func:`fairvlm.metrics.audit_attribute`)."""
    return audit_attribute(
        split.labels, probabilities, split.group_codes(attribute.name),
        group_names=attribute.groups, attribute=attribute.name,
        unknown_code=attribute.unknown_code, min_n=min_n, n_bootstrap=n_bootstrap, seed=seed)


def change_from_start(split: PairTable, attribute: Attribute, start: np.ndarray,
                      selected: np.ndarray, *, min_n: int, n_bootstrap: int,
                      seed: int) -> PairedChanges:
    """How the fine-tune changed the attribute's metrics on ``split``: the selected model's
    zero-shot probabilities ``selected`` against the starting model's ``start``, with paired
    bootstrap intervals on the resamples of :func:`attribute_report` (same ``seed``)."""
    return paired_changes(
        split.labels, start, selected, split.group_codes(attribute.name),
        group_names=attribute.groups, attribute=attribute.name,
        unknown_code=attribute.unknown_code, min_n=min_n, n_bootstrap=n_bootstrap, seed=seed)


def report_summary(report: AttributeReport) -> dict[str, Any]:
    """The numbers logged per epoch: AUC, ES-AUC, worst-group AUC, AUC gap, group AUCs."""
    return {
        "auc": report.auc.value,
        "es_auc": report.es_auc.value,
        "worst_group_auc": report.worst_group_auc.value,
        "auc_gap": report.auc_gap.value,
        "deodds": report.deodds.value,
        "group_auc": {group.name: group.auc.value for group in report.groups},
    }


FALLBACK_METRIC = "auc"
SELECTION_LABELS: dict[str, str] = {"es_auc": "ES-AUC", "auc": "AUC"}
_METRIC_NAME = re.compile(r"\b(es_auc|auc)\b")


def metric_label(metric: str) -> str:
    """``ES-AUC`` for ``es_auc``, ``AUC`` for ``auc`` (other keys as they are)."""
    return SELECTION_LABELS.get(metric, metric)


def selected_entry(selection: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``history`` entry (``epoch``, the ``metric`` it was compared by, ``value``) of the
    selected epoch in a :meth:`Selection.to_dict` record; None when the record has none."""
    epoch = selection.get("epoch")
    return next((entry for entry in selection.get("history") or []
                 if entry.get("epoch") == epoch), None)


def describe_selection(selection: Mapping[str, Any]) -> str:
    """``epoch 3 selected by validation ES-AUC.`` from a :meth:`Selection.to_dict` record,
    epochs counted from 1 (``epoch`` is from 0). When the epochs were compared by the
    fallback metric, the sentence names that metric and why; another note follows."""
    wanted = str(selection.get("metric", "?"))
    entry = selected_entry(selection)
    compared = str(entry["metric"]) if entry is not None else wanted
    line = (f"epoch {(selection.get('epoch') or 0) + 1} selected by validation "
            f"{metric_label(compared)}")
    if compared != wanted:
        return (f"{line} ({metric_label(wanted)} is undefined on validation: fewer than two "
                "groups with enough pairs and both classes).")
    note = _METRIC_NAME.sub(lambda match: metric_label(match[1]),
                            str(selection.get("note") or "")).strip()
    return f"{line}. {note[:1].upper()}{note[1:]}." if note else f"{line}."


@dataclass
class Selection:
    """Model selection on validation: the epoch with the highest value of ``metric``.

    ES-AUC is undefined when fewer than two groups of the validation split have
    ``eval_min_n`` pairs and both classes; that depends on the split alone, so it holds at
    every epoch, and the epochs are then compared by validation AUC instead (:attr:`note`
    says so). An epoch whose value is undefined cannot be selected; ties keep the earlier
    epoch; if no epoch has a value, the last epoch is selected.
    """

    metric: str
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int | None = None
    value: float | None = None
    checkpoint: str | None = None

    def update(self, epoch: int, summary: Mapping[str, Any], checkpoint: str) -> None:
        """Add an epoch's validation summary (:func:`report_summary`) and the checkpoint
        holding that epoch's weights."""
        compared = self.metric if summary[self.metric] is not None else FALLBACK_METRIC
        value = summary[compared]
        self.history.append({"epoch": epoch, "metric": compared, "value": value})
        better = value is not None and (self.value is None or value > self.value)
        if better or self.value is None:
            self.epoch, self.value, self.checkpoint = epoch, value, checkpoint

    @property
    def note(self) -> str:
        if self.value is None:
            return f"validation {self.metric} was undefined at every epoch; the last epoch is used"
        if any(entry["metric"] != self.metric for entry in self.history):
            return (f"validation {self.metric} is undefined (fewer than two groups with enough "
                    f"pairs and both classes); epochs compared by {FALLBACK_METRIC}")
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "history": list(self.history), "epoch": self.epoch,
                "value": self.value, "checkpoint": self.checkpoint, "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        return cls(metric=data["metric"], history=list(data["history"]), epoch=data["epoch"],
                   value=data["value"], checkpoint=data["checkpoint"])
