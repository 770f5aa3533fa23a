"""TrainingData loads a manifest with the run's attribute as its protected column."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from fairvlm.data import load_dataset, load_with_attributes
from fairvlm.errors import DataError
from fairvlm.train.training_data import TrainingData, exclude_pairs, excluded_training_rows


@pytest.fixture(scope="module")
def manifest(small_demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo as a CSV manifest (race and gender as group names, not codes)."""
    table = load_dataset(small_demo_dir)
    frame = table.frame[["id", "split", "image", "text", "label"]].copy()
    for name in ("race", "gender"):
        frame[name] = table.attribute(name).names(table.group_codes(name))
    path = tmp_path_factory.mktemp("manifest") / "pairs.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_manifest_fine_tune_finds_its_attribute(manifest: Path, reference_config) -> None:
    data = TrainingData.load(replace(reference_config(attribute="gender"), data=str(manifest)))
    assert list(data.table.attributes) == ["gender"]
    assert sorted(data.group_names) == ["Female", "Male"]


def test_an_attribute_the_manifest_lacks_is_named(manifest: Path, reference_config) -> None:
    with pytest.raises(DataError, match=r"attribute column\(s\) religion not found"):
        TrainingData.load(replace(reference_config(), data=str(manifest), attribute="religion"))


def test_a_fairvlmed_folder_keeps_its_own_attributes(small_demo_dir: Path) -> None:
    table = load_with_attributes(small_demo_dir, ["race"])
    assert set(table.attributes) == set(load_dataset(small_demo_dir).attributes)


def test_exclusions_leave_out_training_pairs_only(small_demo_dir: Path) -> None:
    table = load_dataset(small_demo_dir)
    frame = table.frame
    train_ids = frame.loc[frame["split"] == "train", "id"].iloc[:3].tolist()
    test_id = frame.loc[frame["split"] == "test", "id"].iloc[0]
    ids = (*train_ids, test_id, "no-such-pair")
    dropped, counts = excluded_training_rows(frame, ids)
    assert counts == {"train": 3, "evaluated": 1, "unknown": 1}
    assert sorted(frame.loc[dropped, "id"]) == sorted(train_ids)
    kept, same_counts = exclude_pairs(table, ids)
    assert same_counts == counts and len(kept) == len(table) - 3
    assert test_id in set(kept.ids) and not set(train_ids) & set(kept.ids)
