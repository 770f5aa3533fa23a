"""The pair-table contract: validation messages, group names, subsets and the fingerprint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairvlm.data.table import Attribute, PairTable
from fairvlm.errors import DataError

RACE = Attribute("race", {0: "Asian", 1: "Black", 2: "White"})


def write_images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for i in range(n):
        np.save(folder / f"img{i}.npy", np.full((4, 4), i, dtype=np.uint8))
        refs.append(str(folder / f"img{i}.npy"))
    return refs


def make_frame(refs: list[str]) -> pd.DataFrame:
    n = len(refs)
    return pd.DataFrame({
        "id": [f"s{i}" for i in range(n)],
        "split": (["train", "val", "test"] * n)[:n],
        "image": refs,
        "text": [f"note {i}" for i in range(n)],
        "label": np.array([i % 2 for i in range(n)], dtype=np.int8),
        "race": [(i % 4) - 1 for i in range(n)],
    })


@pytest.fixture
def table(tmp_path) -> PairTable:
    return PairTable(make_frame(write_images(tmp_path / "a", 6)), {"race": RACE}, name="t",
                     warnings=["skipped 1 file"])


def test_accessors_and_subset(table):
    assert len(table) == 6
    assert table.ids.tolist() == [f"s{i}" for i in range(6)]
    assert table.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert table.split_indices("val").tolist() == [1, 4]
    val = table.subset("val")
    assert val.ids.tolist() == ["s1", "s4"] and val.attributes == table.attributes
    assert val.warnings == ["skipped 1 file"]
    assert table.group_codes("race").tolist() == [-1, 0, 1, 2, -1, 0]
    with pytest.raises(DataError, match="attribute 'sex' is not in the data; available: race"):
        table.attribute("sex")
    with pytest.raises(DataError, match="split 'dev': expected one of train, val, test"):
        table.split_indices("dev")


def test_group_names_keep_unknown_explicit():
    assert RACE.names(np.array([2, -1, 0, 7])).tolist() == ["White", "unknown", "Asian", "7"]
    assert RACE.group_name(-1) == "unknown" and RACE.group_name(1) == "Black"


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.drop(columns=["text"]), r"t: missing column\(s\) text; expected id, split"),
    (lambda f: f.iloc[:0], "t: the data set is empty"),
    (lambda f: f.assign(id=["s0", "s0", "s2", "s3", "s4", "s5"]),
     "field id: duplicate sample id 's0'"),
    (lambda f: f.assign(id=["a/b", "s1", "s2", "s3", "s4", "s5"]),
     "field id: 'a/b' contains a path separator"),
    (lambda f: f.assign(split=["train", "dev", "test", "train", "val", "test"]),
     "field split: 'dev'; expected one of train, val, test"),
    (lambda f: f.assign(label=[0, 1, 2, 0, 1, 0]), "field label: '2' is not binary"),
    (lambda f: f.assign(race=[0, 1, None, 2, 0, 1]), "field race: missing or non-numeric"),
    (lambda f: f.assign(race=[0, 1, 1.5, 2, 0, 1]), "field race: non-integer group code"),
    (lambda f: f.drop(columns=["race"]), "attribute column 'race' is missing"),
    (lambda f: f.assign(text=["a", "b", None, "d", "e", "f"]), "field text: a note is not a"),
])
def test_validation_names_the_field(tmp_path, edit, message):
    frame = edit(make_frame(write_images(tmp_path / "a", 6)))
    with pytest.raises(DataError, match=message):
        PairTable(frame, {"race": RACE}, name="t")


def test_fingerprint_stable_moved_and_sensitive(tmp_path):
    refs = write_images(tmp_path / "a", 6)
    first = PairTable(make_frame(refs), {"race": RACE}).fingerprint()
    assert PairTable(make_frame(refs), {"race": RACE}).fingerprint() == first
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # the same files in another folder
    moved = [ref.replace(str(tmp_path / "a"), str(tmp_path / "b")) for ref in refs]
    assert PairTable(make_frame(moved), {"race": RACE}).fingerprint() == first

    edited_text = make_frame(refs)
    edited_text.loc[2, "text"] = "note 2, edited"
    edited_label = make_frame(refs)
    edited_label.loc[0, "label"] = 1
    renamed = Attribute("race", {0: "Asian", 1: "Black", 2: "Caucasian"})
    np.save(tmp_path / "b" / "img3.npy", np.full((4, 4), 99, dtype=np.uint8))  # same size
    others = {
        PairTable(edited_text, {"race": RACE}).fingerprint(),
        PairTable(edited_label, {"race": RACE}).fingerprint(),
        PairTable(make_frame(refs), {"race": renamed}).fingerprint(),
        PairTable(make_frame(moved), {"race": RACE}).fingerprint(),
    }
    assert len(others) == 4 and first not in others


def test_importing_the_data_package_does_not_import_torch():
    code = ("import sys, fairvlm.data, fairvlm.data.summary, fairvlm.cli.inspect; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
