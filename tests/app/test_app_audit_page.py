"""AppTest of the Audit page on the small demo with the tiny (untrained) checkpoint.

The numbers shown are checked against sklearn on the audit's predictions; the caching
contract (a display widget recomputes nothing, a metric setting recomputes the metrics but not
the embeddings) by counting calls.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from app_driver import open_page, run, shown
from sklearn.metrics import roc_auc_score
from streamlit.testing.v1 import AppTest

from fairvlm.audit import run_audit
from fairvlm.config import AuditConfig
from fairvlm.data import load_dataset
from fairvlm.models import load_model
from fairvlm.scoring import embeddings as embeddings_module
from fairvlm.ui import audit_view
from fairvlm.ui.text import plain

PAGE = "pages/audit.py"
FAST = {"audit.n_bootstrap": 50, "audit.n_permutations": 10, "audit.min_n": 4}


@pytest.fixture()
def home(app_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAIRVLM_HOME", str(app_home))
    monkeypatch.setenv("FAIRVLM_DATA_ROOTS", str(app_home))
    return app_home


def _open(home: Path) -> AppTest:
    """The audit page, its first audit run with few resamples (to keep the test fast)."""
    app = open_page(home, PAGE)
    for key, value in FAST.items():
        app.number_input(key=key).set_value(value)
    return _submit(app)



def _submit(app: AppTest) -> AppTest:
    app.button(key="audit.run").click()
    return run(app)


def _group_table(app: AppTest):
    return next(f.value for f in app.dataframe if "AUC" in f.value.columns).set_index("group")


def _metrics_table(app: AppTest):
    return next(f.value for f in app.dataframe if "metric" in f.value.columns).set_index("metric")


def test_the_demo_audit_shows_tables_charts_and_summary(home: Path) -> None:
    app = _open(home)
    assert not app.error
    assert [h.value for h in app.subheader][:1] == ["By race"]
    assert len(app.get("plotly_chart")) == 3  # group AUC bars, ROC curves, distribution
    table = load_dataset(home / "demo" / "data")
    loaded = load_model(str(home / "tiny.safetensors"), device="cpu")
    result = run_audit(table, loaded, AuditConfig(
        attributes=("race",), n_bootstrap=50, n_permutations=10, min_n=4,
        prompts=loaded.default_prompts))
    assert app.info[0].value == plain(result.attributes[0].summary)
    predictions = result.predictions
    groups = _group_table(app)
    report = result.attributes[0].report
    for group, members in predictions.groupby("race"):
        assert groups.loc[group, "n"] == len(members)
        assert groups.loc[group, "positives"] == members["label"].sum()
        if len(members) >= 4 and members["label"].nunique() == 2:
            expected = roc_auc_score(members["label"], members["probability"])
            assert groups.loc[group, "AUC"] == f"{expected:.3f}"
        else:  # below the minimum group size or a single class: undefined, reason in note
            reason = next(g for g in report.groups if g.name == group).auc.note
            assert groups.loc[group, "AUC"] == "undefined"
            assert reason and reason in groups.loc[group, "note"]
    assert groups["95% CI"].str.contains("–").any()
    worst = report.worst_group_auc
    assert any(shown(c.value) == (f"lowest: {report.worst_group} · 95% CI of the minimum "
                                  f"{worst.ci_low:.3f} – {worst.ci_high:.3f}")
               for c in app.caption)
    threshold = result.threshold
    assert any(f"Threshold {threshold.value:.3g}: Youden's J on validation "
               f"({threshold.n_chosen_on:,} pairs of val)." in c.value for c in app.caption)
    distances = next(f.value for f in app.dataframe if "Sinkhorn S" in f.value.columns)
    assert set(distances["group"]) == set(predictions["race"])
    labels = {button.proto.label for button in app.get("download_button")}
    assert labels == {"metrics.json", "predictions.csv", "report.html"}


def test_intersection_fixed_threshold_and_no_bootstrap(home: Path) -> None:
    app = _open(home)
    assert app.selectbox(key="audit.threshold").options == [
        "0.5 (fixed)", "Youden's J on validation", "best F1 on validation"]
    app.multiselect(key="audit.attributes").set_value(["race", "gender"])
    app.selectbox(key="audit.threshold").set_value("fixed")
    app.toggle(key="audit.bootstrap").set_value(False)
    _submit(app)
    assert not app.error
    assert [h.value for h in app.subheader][:1] == ["By race & gender"]
    assert any("Threshold 0.5 (fixed)." in c.value for c in app.caption)
    shown = _group_table(app)
    assert any(" & " in group for group in shown.index)
    assert (shown["95% CI"] == "").all()


def test_groups_below_the_minimum_size_get_a_hint_and_dashed_tiles(home: Path) -> None:
    """Every group below min_n: the hint names each with its n and the size that includes
    them all; the comparison tiles show a dash with the reason underneath."""
    app = _open(home)
    assert not any("below the minimum group size" in c.value for c in app.caption)  # min_n 4
    app.number_input(key="audit.min_n").set_value(10_000)
    _submit(app)
    assert not app.error
    groups = _group_table(app)
    sized = groups[groups["n"] > 0]
    names = ", ".join(f"{name} (n = {n:,})" for name, n in zip(sized.index, sized["n"],
                                                                 strict=True))
    expected = (f"{names} are below the minimum group size (10,000) and left out of ES-AUC, "
                "worst-group AUC, the gaps, DPD and DEOdds. With fewer than two groups left, "
                f"those comparisons are undefined. Set Minimum group size to {sized['n'].min()} "
                "to include them (expect wide intervals).")
    hints = [shown(c.value) for c in app.caption if ":material/tips_and_updates:" in c.value]
    assert hints == [f":material/tips_and_updates: {expected}"]
    tiles = {metric.label: metric.value for metric in app.metric}
    assert tiles["ES-AUC"] == tiles["Worst-group AUC"] == tiles["AUC gap"] == "–"
    assert tiles["AUC"] != "–"
    reasons = [shown(c.value) for c in app.caption if shown(c.value).startswith("undefined: ")]
    assert len(reasons) == 3
    metrics = _metrics_table(app)  # the same reasons, in the note column, not in the value
    es_auc = metrics.loc["ES-AUC = AUC / (1 + Σ|AUC_g − AUC|)"]
    assert es_auc["value"] == "undefined"
    assert f"undefined: {es_auc['note']}" in reasons
    assert (groups["AUC"] == "undefined").all()
    assert groups["note"].str.startswith("n = ").all()


def test_display_widgets_reuse_the_audit_and_settings_reuse_the_embeddings(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audits, encodings = [], []
    real_audit, real_encode = audit_view.run_audit, embeddings_module._encode
    monkeypatch.setattr(audit_view, "run_audit",
                        lambda *a, **k: audits.append(1) or real_audit(*a, **k))
    monkeypatch.setattr(embeddings_module, "_encode",
                        lambda *a, **k: encodings.append(1) or real_encode(*a, **k))
    monkeypatch.setattr(audit_view, "warm_up_other_attributes", lambda *a: None)
    audit_view.cached_audit.clear()
    app = _open(home)
    before = (len(audits), len(encodings))
    app.segmented_control(key="audit.statistic.race").set_value("similarity")
    run(app)
    assert "image-text cosine by race" in app.get("plotly_chart")[2].proto.spec
    assert (len(audits), len(encodings)) == before  # display only: nothing recomputed
    app.number_input(key="audit.min_n").set_value(30)
    _submit(app)
    assert len(audits) == before[0] + 1 and len(encodings) == before[1]
    assert any(c.value.startswith("Note: hidden") for c in app.caption)


def test_other_attributes_are_audited_in_the_background(home: Path) -> None:
    """After the first audit, choosing another attribute finds every stage in the memo."""
    audit_view.cached_audit.clear()
    audit_view.stage_memo().clear()
    audit_view.warm_up.clear()
    app = _open(home)
    assert audit_view.warm_up().wait(timeout=120)
    memo = audit_view.stage_memo()
    misses = memo.misses
    app.multiselect(key="audit.attributes").set_value(["gender"])
    _submit(app)
    assert [h.value for h in app.subheader][:1] == ["By gender"]
    assert memo.misses == misses and memo.hits > 0


def test_empty_prompts_are_one_error_line(home: Path) -> None:
    app = _open(home)
    app.text_area(key="audit.prompts.1").input("  \n ")
    _submit(app)
    assert len(app.error) == 1
    assert "prompts for class 1 (glaucoma) are empty" in app.error[0].value
    assert any(c.value.startswith("Hint:") for c in app.caption)

