"""The pairs a fine-tune sees: the table minus excluded training pairs, the attribute's groups,
the batches.

:meth:`TrainingData.load` runs every check that needs the data (the attribute exists, train
and validation pairs remain after exclusions, every group of the attribute holds
``k_per_group`` training pairs), so a bad setting is refused before a run folder is touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fairvlm.data import load_with_attributes
from fairvlm.data.table import Attribute, PairTable
from fairvlm.train.config import TrainConfig
from fairvlm.train.sampler import GroupAwareBatchSampler

EVALUATED_SPLITS: tuple[str, ...] = ("val", "test")


@dataclass(frozen=True)
class TrainingData:
    """The run's table and what the loop derives from it.

    Attributes
    ----------
    table
        The data set without the excluded training pairs.
    excluded
        The counts of :func:`exclude_pairs`: ``train`` pairs left out, ``evaluated``
        (excluded ids of validation or test pairs, kept) and ``unknown`` ids.
    attribute
        The run's protected attribute.
    train_rows, train_ids
        Table rows and ids of the training split; the sampler's positions index them.
    sampler
        The group-aware batch sampler of this rank.
    group_names
        Name of fairness-term group ``g`` (``sampler.groups[g]``).
    splits
        The evaluated splits present (``"val"``, and ``"test"`` if it has pairs).
    """

    table: PairTable
    excluded: dict[str, int]
    attribute: Attribute
    train_rows: np.ndarray
    train_ids: np.ndarray
    sampler: GroupAwareBatchSampler
    group_names: tuple[str, ...]
    splits: dict[str, PairTable]

    @classmethod
    def load(cls, config: TrainConfig, *, rank: int = 0, world_size: int = 1) -> TrainingData:
        """Load ``config.data``, leave out ``config.exclude``, build this rank's sampler.

        Raises
        ------
        FairVLMError
            Unreadable data, an unknown attribute, an empty train or validation split, or a
            group smaller than ``k_per_group`` (or too many groups for the batch).
        """
        table, excluded = exclude_pairs(
            load_with_attributes(config.data, [config.attribute]), config.exclude)
        config.check_data(table)
        attribute = table.attribute(config.attribute)
        train_rows = table.split_indices("train")
        codes = table.group_codes(config.attribute)[train_rows]
        names = {int(code): attribute.group_name(code) for code in np.unique(codes)}
        sampler = GroupAwareBatchSampler(
            codes, config.batch_size, min_per_group=config.k_per_group, seed=config.seed,
            rank=rank, world_size=world_size, group_names=names)
        return cls(
            table=table, excluded=excluded, attribute=attribute, train_rows=train_rows,
            train_ids=table.ids[train_rows].astype(str), sampler=sampler,
            group_names=tuple(names[int(code)] for code in sampler.groups),
            splits={split: table.subset(split) for split in EVALUATED_SPLITS
                    if len(table.split_indices(split))})

    def group_members(self, group: int) -> np.ndarray:
        """Training-split positions of the members of fairness-term group ``group``."""
        return np.flatnonzero(self.sampler.group_index == group)


def exclude_pairs(table: PairTable, ids: tuple[str, ...]) -> tuple[PairTable, dict[str, int]]:
    """``table`` without the *training* pairs among ``ids``, and the counts: ``train`` pairs
    left out, ``evaluated``: ids of validation or test pairs, which stay in (so a run's
    numbers are those the Audit and Compare pages compute on the same split; dropping test
    pairs a model gets wrong would flatter it), ``unknown``: ids that matched no pair.
    Nothing is left out for an empty ``ids``."""
    if not ids:
        return table, {}
    dropped, counts = excluded_training_rows(table.frame, ids)
    kept = PairTable(table.frame[~dropped], dict(table.attributes), source=table.source,
                     name=table.name, warnings=list(table.warnings), synthetic=table.synthetic)
    return kept, counts


def excluded_training_rows(frame: pd.DataFrame, ids: Iterable[str]
                           ) -> tuple[np.ndarray, dict[str, int]]:
    """Which rows of ``frame`` (columns ``id``, ``split``) :func:`exclude_pairs` leaves out:
    the training rows among ``ids``, as a mask, and its counts (``train``, ``evaluated``,
    ``unknown``), without building a table (the pages count them on every rerun)."""
    wanted = set(map(str, ids))
    matched = frame["id"].astype(str).isin(wanted).to_numpy()
    dropped = matched & (frame["split"].to_numpy() == "train")
    return dropped, {"train": int(dropped.sum()), "evaluated": int((matched & ~dropped).sum()),
                     "unknown": len(wanted) - int(matched.sum())}
