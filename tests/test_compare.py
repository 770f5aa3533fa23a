"""Comparison of two audited checkpoints: every number against sklearn, fairlearn and hand
computations on the audits' predictions; the download's files; the comparison figures."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from model_files import random_demo_checkpoint
from sklearn.metrics import roc_auc_score

from fairvlm import plots
from fairvlm.audit import AuditResult, run_audit
from fairvlm.compare import (
    HTML_FILE,
    JSON_FILE,
    ComparedModel,
    Comparison,
    compare,
    comparison_files,
    delta_column,
    distribution_view,
    estimate_text,
    render_html,
)
from fairvlm.config import AuditConfig
from fairvlm.data import load_dataset
from fairvlm.errors import ConfigError, DataError
from fairvlm.metrics import Estimate
from fairvlm.metrics._bootstrap import draw_resample_indices
from fairvlm.models import load_model
from fairvlm.report import SYNTHETIC_NOTE

CONFIG = AuditConfig(attributes=("race", "gender"), split="train", min_n=1, n_bootstrap=40,
                     n_permutations=0)
LABELS = ("baseline", "<b>other</b>")


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo architecture with other seeded random weights than ``tiny_checkpoint``."""
    return random_demo_checkpoint(tmp_path_factory.mktemp("other-model") / "other.safetensors",
                                  seed=7)


@pytest.fixture(scope="module")
def results(small_demo_dir: Path, tiny_checkpoint: Path, other_checkpoint: Path
            ) -> tuple[AuditResult, AuditResult]:
    table = load_dataset(small_demo_dir)
    return tuple(run_audit(table, load_model(str(path), device="cpu"), CONFIG)
                 for path in (tiny_checkpoint, other_checkpoint))


@pytest.fixture(scope="module")
def comparison(results) -> Comparison:
    return compare([ComparedModel(label, f"spec-{i}", result)
                    for i, (label, result) in enumerate(zip(LABELS, results, strict=True))])


def _expected(predictions: pd.DataFrame, attribute: str) -> dict[str, float]:
    """AUC, group AUCs, ES-AUC, DPD and DEOdds from the predictions, without fairvlm."""
    labels, scores = predictions["label"], predictions["probability"]
    overall = roc_auc_score(labels, scores)
    groups = {name: roc_auc_score(part["label"], part["probability"])
              for name, part in predictions.groupby(attribute)}
    return {
        "AUC": overall,
        **{f"AUC {name}": value for name, value in groups.items()},
        "ES-AUC": overall / (1 + sum(abs(value - overall) for value in groups.values())),
        "DPD": demographic_parity_difference(labels, predictions["prediction"],
                                             sensitive_features=predictions[attribute]),
        "DEOdds": equalized_odds_difference(labels, predictions["prediction"],
                                            sensitive_features=predictions[attribute]),
    }


@pytest.mark.parametrize("attribute", ["race", "gender"])
def test_values_and_deltas_match_independent_computations(comparison, results,
                                                          attribute) -> None:
    baseline, other = (_expected(result.predictions, attribute) for result in results)
    rows = comparison.rows()
    rows = rows[rows["attribute"] == attribute]
    assert set(rows["metric"]) == set(baseline)
    for metric, value in baseline.items():
        base_row, other_row = (rows[(rows["metric"] == metric) & (rows["model"] == label)]
                               .iloc[0] for label in LABELS)
        assert base_row["value"] == pytest.approx(value, abs=1e-12), metric
        assert other_row["value"] == pytest.approx(other[metric], abs=1e-12), metric
        assert pd.isna(base_row["delta"]) and pd.isna(base_row["delta_low"])
        delta = other[metric] - value
        assert other_row["delta"] == pytest.approx(delta, abs=1e-12), metric
        low, high = other_row["delta_low"], other_row["delta_high"]
        assert low <= delta <= high or not low <= high, metric  # percentile interval
        better = -1 if metric in ("DPD", "DEOdds") else 1
        measurable = low > 0 or high < 0
        assert other_row["improved"] == ((low > 0) == (better > 0) if measurable else None)


def test_deltas_carry_paired_intervals_from_the_same_resamples(comparison, results) -> None:
    """The AUC delta's interval is the percentile interval of the AUC differences on the
    audits' own resamples (scikit-learn on the explicit indices)."""
    before, after = (result.predictions for result in results)
    labels = before["label"].to_numpy()
    samples = [roc_auc_score(labels[rows], after["probability"].to_numpy()[rows])
               - roc_auc_score(labels[rows], before["probability"].to_numpy()[rows])
               for rows in draw_resample_indices(len(labels), CONFIG.n_bootstrap, CONFIG.seed)]
    rows = comparison.rows()
    auc = rows[(rows["metric"] == "AUC") & (rows["model"] == LABELS[1])].iloc[0]
    assert (auc["delta_low"], auc["delta_high"]) == pytest.approx(
        tuple(np.quantile(samples, [0.025, 0.975])), abs=1e-12)


def test_a_model_against_itself_changes_nothing_measurably(results) -> None:
    same = compare([ComparedModel("a", "x", results[0]), ComparedModel("b", "x", results[0])])
    rows = same.rows()
    later = rows[rows["model"] == "b"]
    assert (later["delta"].dropna() == 0).all() and later["improved"].isna().all()
    assert set(same.side_by_side()[delta_column("b")].dropna()) == {"+0.000 [+0.000, +0.000]"}


def test_side_by_side_is_the_paper_table(comparison, results) -> None:
    table = comparison.side_by_side()
    assert list(table.columns) == ["attribute", "metric", "n", *LABELS, delta_column(LABELS[1])]
    race = table[table["attribute"] == "race"].set_index("metric")
    assert list(race.index) == ["DPD", "DEOdds", "AUC", "ES-AUC", "AUC Asian", "AUC Black",
                                "AUC White"]
    predictions = results[0].predictions
    assert race.loc["AUC Black", "n"] == (predictions["race"] == "Black").sum()
    auc = results[0].attribute("race").report.auc
    assert race.loc["AUC", LABELS[0]] == f"{auc.value:.3f} [{auc.ci_low:.3f}, {auc.ci_high:.3f}]"
    expected = _expected(results[1].predictions, "race")["AUC White"] - _expected(
        predictions, "race")["AUC White"]
    shown = race.loc["AUC White", delta_column(LABELS[1])]
    assert shown.startswith(f"{expected:+.3f} [")  # the change, then its paired interval
    improvement = comparison.improvement()
    assert list(improvement.columns) == [delta_column(LABELS[1])]
    assert len(improvement) == len(table)


def test_estimate_text() -> None:
    assert estimate_text(0.8123, 0.75, 0.86) == "0.812 [0.750, 0.860]"
    assert estimate_text(0.8123, None, None) == "0.812"
    assert estimate_text(None, None, None) == "undefined"


def test_refuses_one_model_repeated_labels_and_other_data(results) -> None:
    first, second = results
    with pytest.raises(ConfigError, match="expected two or more"):
        compare([ComparedModel("a", "x", first)])
    with pytest.raises(ConfigError, match="used twice"):
        compare([ComparedModel("a", "x", first), ComparedModel("a", "y", second)])
    elsewhere = dataclasses.replace(second, fingerprints={**second.fingerprints, "data": "f00d"})
    with pytest.raises(DataError, match="other data"):
        compare([ComparedModel("a", "x", first), ComparedModel("b", "y", elsewhere)])
    test_split = dataclasses.replace(second, config=dataclasses.replace(CONFIG, split="test"))
    with pytest.raises(DataError, match="split 'test'"):
        compare([ComparedModel("a", "x", first), ComparedModel("b", "y", test_split)])


def test_download_holds_the_html_report_and_the_json(comparison, results) -> None:
    with zipfile.ZipFile(io.BytesIO(comparison_files(comparison))) as archive:
        assert sorted(archive.namelist()) == sorted([HTML_FILE, JSON_FILE])
        page = archive.read(HTML_FILE).decode()
        data = json.loads(archive.read(JSON_FILE))
    assert [model["label"] for model in data["models"]] == list(LABELS)
    assert [model["fingerprints"] for model in data["models"]] == [r.fingerprints
                                                                    for r in results]
    assert data["audit_config"] == CONFIG.to_dict()
    assert {"fairvlm", "torch", "open_clip_torch", "numpy"} <= set(data["versions"])
    assert len(data["table"]) == len(comparison.rows())
    assert "&lt;b&gt;other&lt;/b&gt;" in page and "<b>other</b>" not in page
    improved = comparison.rows()["improved"]
    assert page.count("class='better'") == (improved == True).sum()  # noqa: E712
    assert page.count("class='worse'") == (improved == False).sum()  # noqa: E712


def test_comparison_figures_draw_the_audited_numbers(comparison, results) -> None:
    reports = [result.attribute("race").report for result in results]
    figure = plots.compared_group_auc_figure(reports, list(LABELS))
    assert [trace.name for trace in figure.data] == list(LABELS)
    for trace, report in zip(figure.data, reports, strict=True):
        assert list(trace.x) == ["overall", "Asian", "Black", "White"]
        assert list(trace.y) == [report.auc.value, *(g.auc.value for g in report.groups)]

    before, after = (distribution_view(result, "race") for result in results)
    figure = plots.before_after_figure(results[0].predictions, results[1].predictions,
                                       before, after, labels=LABELS)
    assert [(trace.name, trace.side) for trace in figure.data] == [
        (LABELS[0], "negative"), (LABELS[1], "positive")]
    n = len(results[0].predictions)
    assert len(figure.data[0].x) == 2 * n  # every pair once for "all pairs", once in its group
    np.testing.assert_allclose(np.sort(figure.data[1].x[:n]),
                               np.sort(results[1].predictions["loss"]), rtol=1e-6)
    black_before = next(g for g in before.groups if g.group == "Black")
    black_after = next(g for g in after.groups if g.group == "Black")
    texts = [annotation.text for annotation in figure.layout.annotations]
    assert f"S {black_before.sinkhorn:.3g} → {black_after.sinkhorn:.3g}" in texts


def test_undefined_values_come_with_their_reasons(small_demo_dir, tiny_checkpoint,
                                                  other_checkpoint) -> None:
    """With every group below min_n, ES-AUC is undefined for both models: one line says why,
    naming the attribute, the metric and both models; defined values get no line."""
    table = load_dataset(small_demo_dir)
    config = dataclasses.replace(CONFIG, attributes=("race",), min_n=10_000, n_bootstrap=0)
    results = [run_audit(table, load_model(str(path), device="cpu"), config)
               for path in (tiny_checkpoint, other_checkpoint)]
    comparison = compare([ComparedModel(label, f"spec-{i}", result)
                          for i, (label, result) in enumerate(zip(LABELS, results, strict=True))])
    note = results[0].attribute("race").report.es_auc.note
    assert note and results[1].attribute("race").report.es_auc.note == note
    lines = comparison.undefined_reasons()
    assert f"race · ES-AUC ({LABELS[0]}, {LABELS[1]}): {note}" in lines
    assert not any(" · AUC (" in line for line in lines)  # the overall AUC is defined
    page = render_html(comparison)  # the report lists every reason under its table
    start = page.index("Why values are undefined")
    listed = page[start:page.index("</ul>", start)]
    assert listed.count("<li>") == len(lines)
    escaped = f"race · ES-AUC (baseline, &lt;b&gt;other&lt;/b&gt;): {note}"
    assert f"<li>{escaped}</li>" in listed


def test_report_header_reads_in_words(comparison, results) -> None:
    """The threshold method as the app names it; synthetic data say so at the top, once."""
    page = render_html(comparison)
    assert "<dt>threshold</dt><dd>Youden&#x27;s J on validation</dd>" in page
    assert ("Why values are undefined" in page) == bool(comparison.undefined_reasons())
    assert all(result.data["synthetic"] for result in results)  # the generated demo
    assert page.count(SYNTHETIC_NOTE) == 1
    assert page.index(SYNTHETIC_NOTE) < page.index("<dl class='facts'>")
    unmarked = [dataclasses.replace(result, data={**result.data, "synthetic": False})
                for result in results]
    page = render_html(compare([ComparedModel(label, f"spec-{i}", result) for i, (label, result)
                                in enumerate(zip(LABELS, unmarked, strict=True))]))
    assert SYNTHETIC_NOTE not in page


def test_notes_on_defined_values_are_listed_apart_from_undefined_reasons(results) -> None:
    """A defined value with a note (here an interval without spread) is listed under 'Notes
    on values', in the page's lines and the report, not among the undefined ones."""
    first, second = results
    note = "every resample gave 0.500: an interval without spread understates the uncertainty"
    race = first.attribute("race")
    noted = dataclasses.replace(race, report=dataclasses.replace(
        race.report, auc=Estimate(0.5, 0.5, 0.5, note)))
    marked = dataclasses.replace(first, attributes=tuple(
        noted if audited.name == "race" else audited for audited in first.attributes))
    comparison = compare([ComparedModel("a", "x", marked), ComparedModel("b", "y", second)])
    assert comparison.value_notes() == [f"race · AUC (a): {note}"]
    assert all(note not in line for line in comparison.undefined_reasons())
    page = render_html(comparison)
    assert "<h3>Notes on values</h3>" in page and f"race · AUC (a): {note}" in page
