"""Tests of the app's helpers: count tables, sample picking, Markdown escaping, image roots,
and the child-process runner behind the demo's progress bars."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairvlm.data import Attribute, PairTable, summarize
from fairvlm.errors import DataError, FairVLMError
from fairvlm.ui.cache import require_images_within
from fairvlm.ui.cli_jobs import run_fairvlm
from fairvlm.ui.gallery import attribute_line, pick_samples
from fairvlm.ui.tables import ALL_SPLITS, group_counts, in_split, split_counts
from fairvlm.ui.text import plain, shorten


def _table(root: Path, n: int = 60, seed: int = 0) -> PairTable:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "id": [f"p{i}" for i in range(n)],
        "split": rng.choice(["train", "val", "test"], size=n, p=[0.6, 0.2, 0.2]),
        "image": [str(root / "images" / f"p{i}.png") for i in range(n)],
        "text": [f"note {i}" for i in range(n)],
        "label": rng.integers(0, 2, size=n).astype(np.int8),
        "race": rng.choice([0, 1, 2, -1], size=n),
    })
    race = Attribute("race", {0: "Asian", 1: "Black", 2: "White"})
    return PairTable(frame, {"race": race}, source="hand-made", name="hand")


def test_group_counts_match_a_direct_count(tmp_path: Path) -> None:
    table = _table(tmp_path)
    summary = summarize(table)
    names = {0: "Asian", 1: "Black", 2: "White", -1: "unknown"}
    for split in ("train", "test", ALL_SPLITS):
        rows = table.frame if split == ALL_SPLITS else table.frame[table.frame["split"] == split]
        shown = group_counts(summary, "race", split).set_index("group")
        expected = rows.groupby(rows["race"].map(names))["label"].agg(["size", "sum"])
        for group, (size, positives) in expected.iterrows():
            assert shown.loc[group, "n"] == size
            assert shown.loc[group, "positives"] == positives
            assert shown.loc[group, "prevalence"] == pytest.approx(positives / size)
            assert shown.loc[group, "share"] == pytest.approx(size / len(rows))
        assert list(shown.index)[-1] == "unknown"


def test_split_counts_and_in_split(tmp_path: Path) -> None:
    table = _table(tmp_path)
    summary = summarize(table)
    shown = split_counts(summary).set_index("split")
    counts = table.frame.groupby("split")["label"].agg(["size", "sum"])
    for split, (size, positives) in counts.iterrows():
        assert (shown.loc[split, "n"], shown.loc[split, "positives"]) == (size, positives)
    assert shown.loc["total", "n"] == len(table.frame)
    assert shown.loc["total", "prevalence"] == pytest.approx(table.frame["label"].mean())
    assert set(in_split(summary, "val")["split"]) == {"val"}
    assert len(in_split(summary, ALL_SPLITS)) == len(summary)


def test_empty_group_has_undefined_prevalence(tmp_path: Path) -> None:
    table = _table(tmp_path, n=12, seed=3)
    summary = summarize(table)
    for split in ("train", "val", "test"):
        shown = group_counts(summary, "race", split)
        empty = shown[shown["n"] == 0]
        assert empty["prevalence"].isna().all()


def test_pick_samples_filters_and_is_seeded(tmp_path: Path) -> None:
    table = _table(tmp_path)
    frame = table.frame
    picked = pick_samples(table, n=5, seed=1, split="train", attribute="race", code=2, label=1)
    matching = frame[(frame["split"] == "train") & (frame["race"] == 2) & (frame["label"] == 1)]
    assert set(picked["id"]) <= set(matching["id"])
    assert len(picked) == min(5, len(matching))
    again = pick_samples(table, n=5, seed=1, split="train", attribute="race", code=2, label=1)
    assert picked["id"].tolist() == again["id"].tolist()
    everything = pick_samples(table, n=1000, seed=0)
    assert everything["id"].tolist() == frame["id"].tolist()
    draws = {tuple(pick_samples(table, n=8, seed=s)["id"]) for s in range(5)}
    assert len(draws) == 5
    assert pick_samples(table, n=8, seed=0, split="val", attribute="race", code=99).empty


def test_attribute_line_uses_group_names(tmp_path: Path) -> None:
    table = _table(tmp_path)
    row = table.frame[table.frame["race"] == -1].iloc[0]
    assert attribute_line(table, row) == "race unknown"


def test_plain_escapes_markdown_and_streamlit_syntax() -> None:
    assert plain("- a *b* _c_ `d` :red[e] $f$ <i>g</i> #h") == (
        "\\- a \\*b\\* \\_c\\_ \\`d\\` \\:red\\[e\\] \\$f\\$ \\<i\\>g\\</i\\> \\#h")
    assert plain("12. item") == "12\\. item"
    assert plain("C/D 0.5,\n IOP 21") == "C/D 0.5, IOP 21"
    assert shorten("one two three four", 12) == "one two…"
    assert shorten("short", 12) == "short"


def test_images_outside_the_roots_are_refused(tmp_path: Path) -> None:
    table = _table(tmp_path)
    require_images_within(table, [tmp_path])
    with pytest.raises(DataError, match="image outside the allowed data roots") as caught:
        require_images_within(table, [tmp_path / "elsewhere"])
    assert str(tmp_path / "images") in str(caught.value)


def test_run_fairvlm_reports_progress_and_output(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    out = tmp_path / "demo"
    stdout = run_fairvlm(["demo", "--out", str(out), "--subjects", "20", "--image-size", "16"],
                         on_progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1] == (20, 20)
    assert all(total == 20 for _, total in seen)
    assert stdout.startswith("demo: wrote 20 SYNTHETIC subjects")
    assert len(list(out.glob("*/data_*.npz"))) == 20


def test_run_fairvlm_turns_the_error_line_into_a_user_error(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    with pytest.raises(FairVLMError, match="is a file") as caught:
        run_fairvlm(["demo", "--out", str(occupied)], on_progress=lambda done, total: None)
    assert str(occupied) in str(caught.value)


def test_warm_up_serves_only_the_newest_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """While one request runs, later ones replace each other; a served one is not redone."""
    from types import SimpleNamespace

    from fairvlm.config import AuditConfig
    from fairvlm.ui import audit_view

    first_started, release, audited = threading.Event(), threading.Event(), []

    def fake_audit(table, loaded, config, memo):
        audited.append((config.min_n, config.attributes))
        first_started.set()
        release.wait(5)

    monkeypatch.setattr(audit_view, "run_audit", fake_audit)
    monkeypatch.setattr(audit_view, "stage_memo", lambda: None)
    table = SimpleNamespace(fingerprint=lambda: "data", attributes={"race": 0, "gender": 0})
    loaded = SimpleNamespace(fingerprint="model")
    worker = audit_view.WarmUp()
    worker.request(table, loaded, AuditConfig(attributes=("race",), min_n=1))
    first_started.wait(5)
    for min_n in (2, 3, 4):  # queued while the first runs: only 4 survives
        worker.request(table, loaded, AuditConfig(attributes=("race",), min_n=min_n))
    worker.request(table, loaded, AuditConfig(attributes=("race",), min_n=1))  # served
    release.set()
    assert worker.wait(timeout=10)
    assert audited == [(1, ("gender",)), (4, ("gender",))]


def _report(min_n: int = 1, n_bootstrap: int = 200):
    """Scores of four groups of 30 pairs: Asian and Black score alike (worse than White),
    Other holds one class only (its AUC is undefined)."""
    from fairvlm.metrics import audit_attribute

    rng = np.random.default_rng(4)
    codes = np.repeat([0, 1, 2, 3], 30)
    labels = np.where(codes == 3, 0, rng.integers(0, 2, size=120))
    effect = np.array([0.25, 0.22, 0.6, 0.3])[codes]
    scores = np.clip(labels * effect + rng.uniform(0, 0.6, 120), 0, 1)
    return audit_attribute(labels, scores, codes, attribute="race", min_n=min_n,
                           group_names={0: "Asian", 1: "Black", 2: "White", 3: "Other"},
                           n_bootstrap=n_bootstrap, seed=0)


def test_the_worst_group_tile_says_its_interval_is_the_minimums() -> None:
    """The caption names the lowest group and calls the interval the minimum's, which is not
    that group's own interval; the other tiles keep ``95% CI low – high``."""
    from fairvlm.ui.audit_view import headline_tiles, tile_caption

    report = _report()
    tiles = {label: (estimate, group, meaning)
             for label, estimate, group, meaning in headline_tiles(report)}
    estimate, group, meaning = tiles["Worst-group AUC"]
    assert group == report.worst_group == "Black"
    own = next(g.auc for g in report.groups if g.name == "Black")
    assert (own.ci_low, own.ci_high) != (estimate.ci_low, estimate.ci_high)
    assert tile_caption(estimate, group) == (
        f"lowest: Black · 95% CI of the minimum {estimate.ci_low:.3f} – {estimate.ci_high:.3f}")
    assert "minimum over the groups" in meaning and "Groups table" in meaning
    auc = tiles["AUC"][0]
    assert tile_caption(auc) == f"95% CI {auc.ci_low:.3f} – {auc.ci_high:.3f}"
    assert tile_caption(report.auc_gap) == (
        f"95% CI {report.auc_gap.ci_low:.3f} – {report.auc_gap.ci_high:.3f}")


def test_tables_say_undefined_and_put_the_reason_in_the_note() -> None:
    """An undefined AUC or metric reads just ``undefined`` and its reason is the note (the
    group's own note and its AUC's, each once); a defined value keeps its number."""
    from fairvlm.ui.audit_view import group_table, headline_table

    hidden = "n = 30 is below min_n = 40: hidden from the summary"
    report = _report(min_n=40)  # every group (30 pairs) below min_n
    groups = group_table(report).set_index("group")
    assert list(groups["AUC"]) == ["undefined"] * 4
    assert list(groups["note"]) == [hidden] * 4  # group note and AUC note alike: said once
    metrics = headline_table(report).set_index("metric")
    es_auc = "ES-AUC = AUC / (1 + Σ|AUC_g − AUC|)"
    assert metrics.loc[es_auc, "value"] == "undefined"
    assert metrics.loc[es_auc, "note"] == "fewer than two shown groups have a defined AUC"
    assert metrics.loc["AUC", "value"] == f"{report.auc.value:.3f}"
    assert not metrics["value"].str.startswith("undefined (").any()

    report = _report()
    groups = group_table(report).set_index("group")
    assert groups.loc["Other", "AUC"] == "undefined"
    assert groups.loc["Other", "note"] == "AUC and TPR undefined: no positives"
    black = next(g for g in report.groups if g.name == "Black")
    assert (groups.loc["Black", "AUC"], groups.loc["Black", "note"]) == (
        f"{black.auc.value:.3f}", "")
    metrics = headline_table(report).set_index("metric")
    assert metrics.loc["worst-group AUC (lowest: Black)", "value"] == f"{black.auc.value:.3f}"


def test_threshold_line_and_selectbox_share_the_method_labels() -> None:
    from types import SimpleNamespace

    from fairvlm.audit import Threshold
    from fairvlm.config import THRESHOLD_METHODS, threshold_label
    from fairvlm.ui.audit_view import threshold_line

    def line(threshold: Threshold) -> str:
        return threshold_line(SimpleNamespace(threshold=threshold))

    assert line(Threshold(0.0348, "youden", "val", 1000)) == (
        "Threshold 0.0348: Youden's J on validation (1,000 pairs of val).")
    assert line(Threshold(0.41, "f1", "val", 100)) == (
        "Threshold 0.41: best F1 on validation (100 pairs of val).")
    assert line(Threshold(0.5, "fixed")) == "Threshold 0.5 (fixed)."
    assert [threshold_label(m) for m in THRESHOLD_METHODS] == [
        "0.5 (fixed)", "Youden's J on validation", "best F1 on validation"]
