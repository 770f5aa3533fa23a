"""AppTest of the Bad pairs page on the small demo with the tiny (untrained) checkpoint.

What the page lists is checked against the detectors called directly (fairvlm.pair_issues) and
against the data; decisions are checked in the decisions file itself. The DBPM run is a
hand-made memory in which one training pair has an abnormally high loss.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from app_driver import open_page, run
from streamlit.testing.v1 import AppTest

from fairvlm.data import load_dataset
from fairvlm.data.table import Attribute
from fairvlm.decisions import DecisionFile
from fairvlm.mining import DBPMConfig, LossMemory
from fairvlm.models import load_model
from fairvlm.pair_issues import find_pair_issues, score_pairs
from fairvlm.runs import RunDir
from fairvlm.ui import pair_browser as browser

PAGE = "pages/bad_pairs.py"
EPOCHS = 3


@pytest.fixture()
def home(app_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAIRVLM_HOME", str(app_home))
    monkeypatch.setenv("FAIRVLM_DATA_ROOTS", str(app_home))
    for folder in ("decisions", "runs"):
        shutil.rmtree(app_home / folder, ignore_errors=True)
    return app_home


@pytest.fixture(scope="module")
def expected(app_home: Path, tiny_checkpoint: Path) -> pd.DataFrame:
    """Scores and issues of every pair, computed without the app."""
    table = load_dataset(app_home / "demo" / "data")
    loaded = load_model(str(tiny_checkpoint), device="cpu")
    scores = score_pairs(loaded, table)
    frame = pd.concat([scores, find_pair_issues(scores).drop(columns="id")], axis=1)
    return frame.assign(race=table.frame["race"].to_numpy())




def _shown_ids(app: AppTest) -> list[str]:
    return [m.value.split("**")[1].replace("\\", "") for m in app.markdown
            if m.value.startswith("**data")]


def _matching(app: AppTest) -> int:
    """N of the pager's "Pairs 1–10 of N matching" line."""
    found = (re.match(r"Pairs [\d,]+–[\d,]+ of ([\d,]+) matching", c.value) for c in app.caption)
    return int(next(match for match in found if match)[1].replace(",", ""))


def test_flagged_pairs_are_listed_by_bad_pair_score(home: Path, expected) -> None:
    app = open_page(home, PAGE)
    assert not app.error
    tiles = {metric.label: metric.value for metric in app.metric}
    assert tiles["Pairs"] == "240"
    assert tiles["Mismatch"] == str(int(expected["is_mismatch_issue"].sum()))
    flagged = expected[expected[[c for c in expected if c.startswith("is_")]].any(axis=1)]
    assert _matching(app) == len(flagged)
    top = flagged.sort_values("bad_pair_score", ascending=False, kind="stable")
    assert _shown_ids(app) == top["id"].head(10).tolist()
    app.number_input(key="bad_pairs.page").set_value(2)
    run(app)
    assert _shown_ids(app) == top["id"].iloc[10:20].tolist()


def test_filters_narrow_the_list(home: Path, expected) -> None:
    app = open_page(home, PAGE)
    app.selectbox(key="bad_pairs.kind").set_value("mismatch")
    app.selectbox(key="bad_pairs.split").set_value("train")
    app.selectbox(key="bad_pairs.attribute").set_value("race")
    run(app)
    app.selectbox(key="bad_pairs.group.race").set_value(2)
    app.selectbox(key="bad_pairs.sort").set_value("loss")
    run(app)
    wanted = expected[expected["is_mismatch_issue"] & (expected["split"] == "train")
                      & (expected["race"] == 2)]
    assert _matching(app) == len(wanted)
    assert _shown_ids(app) == wanted.sort_values("loss", ascending=False)["id"].head(10).tolist()
    assert all("race White" in c.value for c in app.caption if c.value.startswith("race"))
    makeup = next(frame.value for frame in app.dataframe if "share of flagged" in frame.value)
    train = expected[expected["split"] == "train"]
    white = train[train["race"] == 2]
    row = makeup.set_index("group").loc["White"]
    assert row["n"] == len(white) and row["flagged"] == white["is_mismatch_issue"].sum()
    assert row["share of all"] == pytest.approx(len(white) / len(train))


def test_a_decision_is_saved_at_once_and_counted(home: Path, expected) -> None:
    app = open_page(home, PAGE)
    first = _shown_ids(app)[0]
    app.segmented_control(key=f"bad_pairs.decision.{first}").set_value("exclude")
    run(app)
    book = DecisionFile(load_dataset(home / "demo" / "data").fingerprint())
    decisions = book.read()
    assert decisions["id"].tolist() == [first]
    assert decisions["decision"].tolist() == ["exclude"]
    model = load_model(str(home / "tiny.safetensors"), device="cpu")
    assert decisions["model_fingerprint"].tolist() == [model.fingerprint]
    split = load_dataset(home / "demo" / "data").frame.set_index("id").loc[first, "split"]
    expected_line = ("1 training pair to leave out of the next fine-tune" if split == "train"
                     else "1 marked validation or test pair(s) stay evaluated")
    assert any(expected_line in s.value for s in app.success)
    app.segmented_control(key=f"bad_pairs.decision.{first}").set_value("keep")
    run(app)
    assert book.decisions() == {first: "keep"} and book.exclusions() == []


def _finished_run(home: Path, ids: list[str], name: str = "r1") -> str:
    """A finished run whose memory gives ``ids[3]`` an abnormally high loss every epoch."""
    run = RunDir(home / "runs" / name).create({"data": "demo", "epochs": EPOCHS})
    memory = LossMemory(ids, epochs=EPOCHS, config=DBPMConfig(warmup=1))
    losses = np.random.default_rng(0).normal(2.0, 0.1, len(ids))
    losses[3] = 5.0
    for epoch in range(EPOCHS):
        memory.begin_epoch(epoch)
        memory.record(ids, torch.tensor(losses), epoch)
    memory.save(run.memory_path)
    run.update_status(state="done")
    return ids[3]


def test_a_run_adds_dbpm_flags_and_the_loss_trajectory(home: Path, expected) -> None:
    train_ids = expected.loc[expected["split"] == "train", "id"].tolist()
    target = _finished_run(home, train_ids)
    app = open_page(home, PAGE)
    app.selectbox(key="bad_pairs.run").set_value(str(home / "runs" / "r1" / "memory.npz"))
    run(app)
    app.selectbox(key="bad_pairs.kind").set_value("faulty")
    run(app)
    assert not app.error
    assert _shown_ids(app) == [target]
    assert any("DBPM faulty" in m.value for m in app.markdown)
    assert len(app.get("plotly_chart")) >= 1  # the trajectory (and the make-up chart)


def test_a_run_on_other_data_is_one_error_line(home: Path) -> None:
    _finished_run(home, [f"elsewhere{i}" for i in range(5)], name="other")
    app = open_page(home, PAGE)
    app.selectbox(key="bad_pairs.run").set_value(str(home / "runs" / "other" / "memory.npz"))
    run(app)
    assert len(app.error) == 1
    assert "holds none of the 240 pair ids" in app.error[0].value
    assert "\n" not in app.error[0].value


def test_browser_selection_order_pages_and_makeup_match_pandas() -> None:
    rng = np.random.default_rng(3)
    n = 500
    frame = pd.DataFrame({
        "split": rng.choice(["train", "test"], n), "label": rng.integers(0, 2, n),
        "race": rng.choice([0, 1, 2, -1], n), "loss": rng.random(n),
        "is_mismatch_issue": rng.random(n) < 0.2, "is_bad_pair_issue": rng.random(n) < 0.1,
    })
    frame.loc[::7, "loss"] = np.nan
    chosen = browser.PairFilter(kind="any", split="train", label=1, attribute="race", group=2,
                                score_column="loss", score_range=(0.2, 0.8))
    query = frame[(frame["is_mismatch_issue"] | frame["is_bad_pair_issue"])
                  & (frame["split"] == "train") & (frame["label"] == 1) & (frame["race"] == 2)
                  & frame["loss"].between(0.2, 0.8)]
    positions = browser.order(frame, browser.select(frame, chosen), "loss")
    assert positions.tolist() == query.sort_values("loss", ascending=False).index.tolist()
    everything = browser.order(frame, np.arange(n), "loss", descending=False)
    assert frame["loss"].iloc[everything[-(n // 7 + 1):]].isna().all()  # no value: last
    assert browser.page(everything, 3, 25).tolist() == everything[50:75].tolist()
    assert browser.page_count(0, 10) == 1 and browser.page_count(101, 10) == 11
    race = Attribute("race", {0: "Asian", 1: "Black", 2: "White"})
    scope = browser.scope_mask(frame, chosen)
    flagged = browser.flag_mask(frame, "mismatch")
    shares = browser.group_makeup(frame, scope, flagged, race).set_index("group")
    in_scope = frame[scope]
    counts = pd.crosstab(in_scope["race"], in_scope["is_mismatch_issue"])
    for code, name in {0: "Asian", 1: "Black", 2: "White", -1: "unknown"}.items():
        n_g, f_g = counts.loc[code].sum(), counts.loc[code].get(True, 0)
        assert (shares.loc[name, "n"], shares.loc[name, "flagged"]) == (n_g, f_g)
        assert shares.loc[name, "flag rate"] == pytest.approx(f_g / n_g)
        assert shares.loc[name, "share of all"] == pytest.approx(n_g / len(in_scope))
        assert shares.loc[name, "share of flagged"] == pytest.approx(
            f_g / in_scope["is_mismatch_issue"].sum())
