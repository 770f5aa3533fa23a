"""Per-split, per-group counts against an independent pandas count, and ``fairvlm inspect``."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import fairvlm.cli
from fairvlm.data import small_group_warnings, summarize
from fairvlm.data.table import Attribute, PairTable

RACE = Attribute("race", {0: "Asian", 1: "Black", 2: "White"})
LANGUAGE = Attribute("language", {0: "English", 1: "Spanish", 2: "Other"})


@pytest.fixture
def table() -> PairTable:
    rng = np.random.default_rng(11)
    n = 300
    frame = pd.DataFrame({
        "id": [f"s{i:03d}" for i in range(n)],
        "split": rng.choice(["train", "val", "test"], size=n, p=[0.7, 0.1, 0.2]),
        "image": [f"/nowhere/s{i}.png" for i in range(n)],
        "text": ["note"] * n,
        "label": rng.integers(0, 2, size=n).astype(np.int8),
        "race": rng.choice([0, 1, 2], size=n, p=[0.1, 0.2, 0.7]),
        "language": rng.choice([0, 1, -1], size=n, p=[0.9, 0.05, 0.05]),  # nobody "Other"
    })
    return PairTable(frame, {"race": RACE, "language": LANGUAGE}, name="synthetic")


def test_counts_match_an_independent_groupby(table):
    summary = summarize(table)
    frame = table.frame
    for attribute in ("race", "language"):
        reference = frame.groupby(["split", attribute])["label"].agg(["size", "sum"])
        for (split, code), (n, positives) in reference.iterrows():
            row = summary[(summary["attribute"] == attribute) & (summary["split"] == split)
                          & (summary["code"] == code)].iloc[0]
            assert (row["n"], row["positives"]) == (n, positives)
            assert row["prevalence"] == pytest.approx(positives / n)
            assert row["group"] == table.attribute(attribute).group_name(code)
    totals = frame.groupby("split")["label"].agg(["size", "sum"])
    overall = summary[summary["attribute"] == "all"].set_index("split")
    assert overall.index.tolist() == ["train", "val", "test"]
    for split, (n, positives) in totals.iterrows():
        assert (overall.loc[split, "n"], overall.loc[split, "positives"]) == (n, positives)


def test_empty_groups_shown_as_undefined_and_unknown_last(table):
    summary = summarize(table, attributes=["language"])
    assert set(summary["attribute"]) == {"all", "language"}
    train = summary[(summary["attribute"] == "language") & (summary["split"] == "train")]
    assert train["group"].tolist() == ["English", "Spanish", "Other", "unknown"]
    other = train[train["group"] == "Other"].iloc[0]
    assert other["n"] == 0 and np.isnan(other["prevalence"])


def test_small_group_warnings():
    summary = pd.DataFrame({
        "attribute": ["all", "race", "race", "race", "race"],
        "group": ["all", "Asian", "Black", "White", "unknown"],
        "code": [pd.NA, 0, 1, 2, -1],
        "split": ["test"] * 5,
        "n": [100, 0, 5, 40, 12],
        "positives": [50, 0, 5, 20, 3],
        "prevalence": [0.5, np.nan, 1.0, 0.5, 0.25],
    })
    assert small_group_warnings(summary, min_n=30) == [
        "race=Asian in test: no pairs",
        "race=Black in test: n=5, positives=5; one class only, so its AUC is undefined",
        "race=unknown in test: n=12 (below 30); its metrics are noise-level",
    ]
    assert small_group_warnings(summary, min_n=10) == small_group_warnings(summary)[:2]


def write_manifest(folder, n: int = 12):
    images = folder / "img"
    images.mkdir()
    for i in range(n):
        np.save(images / f"x{i:02d}.npy", np.full((4, 4), i / n))
    pd.DataFrame({
        "image": [f"img/x{i:02d}.npy" for i in range(n)],
        "text": [f"note {i}" for i in range(n)],
        "label": [i % 2 for i in range(n)],
        "split": ["train"] * 8 + ["val"] * 2 + ["test"] * 2,
        "sex": ["F", "M"] * (n // 2),
    }).to_csv(folder / "manifest.csv", index=False)


@pytest.fixture
def cli(monkeypatch):
    """``fairvlm`` with only the inspect command registered."""
    monkeypatch.setattr(fairvlm.cli, "COMMAND_MODULES", ("inspect",))
    return fairvlm.cli.main


def test_inspect_prints_source_counts_and_small_groups(tmp_path, cli, capsys):
    write_manifest(tmp_path)
    assert cli(["inspect", "--data", str(tmp_path), "--attribute", "sex",
                "--min-group-size", "5"]) == 0
    out = capsys.readouterr().out
    assert "data set: manifest, 12 pairs" in out
    assert f"source: manifest {tmp_path / 'manifest.csv'}: 12 of 12 rows" in out
    assert "sex (n pairs / positives):" in out
    assert re.search(r"^\s*train\s+val\s+test$", out, re.MULTILINE)
    assert re.search(r"^F\s+4 / 0\s+1 / 0\s+1 / 0$", out, re.MULTILINE)
    assert "sex=F in train: n=4, positives=0; one class only" in out


def test_inspect_bad_input_is_one_line(tmp_path, cli, capsys):
    write_manifest(tmp_path)
    assert cli(["inspect", "--data", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no such file" in err
    assert cli(["inspect", "--data", str(tmp_path), "--dicom-tag", "sex"]) == 2
    assert "expected COLUMN=KEYWORD" in capsys.readouterr().err
    assert cli(["inspect", "--data", str(tmp_path), "--attribute", "race"]) == 2
    assert "attribute column(s) race not found" in capsys.readouterr().err
