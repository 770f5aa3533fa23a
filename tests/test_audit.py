"""run_audit on the small demo with an untrained model, checked against sklearn, fairlearn, POT."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from importlib import metadata

import numpy as np
import ot as pot
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from scipy.special import logit
from sklearn.metrics import roc_auc_score, roc_curve

from fairvlm import audit as audit_module
from fairvlm.audit import run_audit
from fairvlm.config import AuditConfig
from fairvlm.data import PairTable, load_dataset
from fairvlm.errors import ConfigError, DataError
from fairvlm.memo import Memo
from fairvlm.models import load_model
from fairvlm.ot import summarised_group_sinkhorn_divergences

ATTRIBUTES = ("race", "gender", "ethnicity", "race&gender")
CONFIG = AuditConfig(attributes=ATTRIBUTES, min_n=5, n_bootstrap=200, n_permutations=40,
                     blur=1.0, seed=1)
QUICK = {"n_bootstrap": 0, "n_permutations": 0}


@pytest.fixture(scope="module")
def table(small_demo_dir) -> PairTable:
    return load_dataset(small_demo_dir)


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    return load_model(str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="module")
def result(table, loaded):
    return run_audit(table, loaded, CONFIG)


def test_predictions_hold_every_pair_of_the_split_in_table_order(table, result) -> None:
    test_rows = table.frame[table.frame["split"] == "test"]
    frame = result.predictions
    assert list(frame.columns[:9]) == ["id", "split", "label", "probability", "prediction",
                                       "similarity", "loss", "rank", "margin"]
    assert set(frame.columns[9:]) == {*table.attributes, "race&gender"}
    assert frame["id"].tolist() == test_rows["id"].tolist()
    assert frame["label"].tolist() == test_rows["label"].astype(int).tolist()
    assert ((frame["probability"] >= result.threshold.value).astype(int)
            == frame["prediction"]).all()
    assert frame["race&gender"].iloc[0] == (f"{frame['race'].iloc[0]} & "
                                            f"{frame['gender'].iloc[0]}")


def test_group_and_overall_aucs_equal_sklearn(result) -> None:
    frame = result.predictions
    assert result.overall["auc"] == pytest.approx(roc_auc_score(frame["label"],
                                                                frame["probability"]))
    checked = 0
    for audited in result.attributes:
        for group in audited.report.groups:
            members = frame[frame[audited.name] == group.name]
            assert group.n == len(members)
            if group.auc.value is not None:
                expected = roc_auc_score(members["label"], members["probability"])
                assert group.auc.value == pytest.approx(expected, abs=1e-12)
                checked += 1
    assert checked >= 6


def test_parity_gaps_equal_fairlearn_where_every_group_is_shown(result) -> None:
    frame = result.predictions
    report = result.attribute("gender").report
    assert all(group.shown for group in report.groups)
    args = (frame["label"], frame["prediction"])
    assert report.dpd.value == pytest.approx(
        demographic_parity_difference(*args, sensitive_features=frame["gender"]))
    assert report.deodds_fairlearn.value == pytest.approx(
        equalized_odds_difference(*args, sensitive_features=frame["gender"]))


def test_threshold_maximises_youden_on_the_validation_split(table, loaded, result) -> None:
    validation = run_audit(table, loaded, AuditConfig(attributes=("gender",), split="val",
                                                      **QUICK)).predictions
    assert result.threshold.method == "youden" and result.threshold.chosen_on == "val"
    assert result.threshold.n_chosen_on == len(validation)
    fpr, tpr, _ = roc_curve(validation["label"], validation["probability"])
    predicted = validation["probability"] >= result.threshold.value
    positive = validation["label"] == 1
    ours = predicted[positive].mean() - predicted[~positive].mean()
    assert ours == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def _converged_sinkhorn(x: np.ndarray, y: np.ndarray, blur: float) -> float:
    """Debiased S_eps(x, y) = OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2 from POT's
    float64 log-domain solver run to convergence; OT_eps = <P, C> + eps KL(P | a x b)."""

    def entropic(u: np.ndarray, v: np.ndarray) -> float:
        a, b = np.full(len(u), 1 / len(u)), np.full(len(v), 1 / len(v))
        cost = 0.5 * (u[:, None] - v[None, :]) ** 2
        plan = pot.bregman.sinkhorn_log(a, b, cost, blur**2, numItermax=100_000, stopThr=1e-12)
        mass = plan > 0
        kl = (plan[mass] * np.log(plan[mass] / np.outer(a, b)[mass])).sum()
        return float((plan * cost).sum() + blur**2 * kl)

    return entropic(x, y) - 0.5 * (entropic(x, x) + entropic(y, y))


@pytest.mark.parametrize("statistic", ["loss", "similarity"])
def test_distribution_distances_equal_pot_references(result, statistic: str) -> None:
    frame = result.predictions
    view = next(v for v in result.attribute("race").distributions if v.statistic == statistic)
    population = frame[statistic].to_numpy()
    assert view.blur == pytest.approx(CONFIG.blur * population.std())
    assert view.population_n == len(frame) and view.n_permutations == CONFIG.n_permutations
    for group in view.groups:
        values = frame.loc[frame["race"] == group.group, statistic].to_numpy()
        assert group.n == values.size
        assert group.mean == pytest.approx(values.mean())
        assert group.w2 == pytest.approx(0.5 * pot.wasserstein_1d(values, population, p=2),
                                         rel=1e-9, abs=1e-12)
        expected = _converged_sinkhorn(values, population, view.blur)
        assert group.sinkhorn == pytest.approx(expected, rel=1e-3, abs=1e-6)
        assert 1 / (1 + CONFIG.n_permutations) <= group.p_value <= 1


def test_unknown_codes_can_be_left_out(table, loaded) -> None:
    config = AuditConfig(attributes=("ethnicity",), unknown="exclude", min_n=1, **QUICK)
    audited = run_audit(table, loaded, config).attribute("ethnicity")
    test_rows = table.frame[table.frame["split"] == "test"]
    known = int((test_rows["ethnicity"] != -1).sum())
    assert known < len(test_rows)
    assert audited.report.n == known
    assert "unknown" not in [group.name for group in audited.report.groups]
    assert all(view.population_n == known for view in audited.distributions)


def test_fingerprints_versions_and_strict_json(table, loaded, result) -> None:
    assert result.fingerprints["data"] == table.fingerprint()
    assert result.fingerprints["model"] == loaded.fingerprint
    explicit = replace(CONFIG, prompts=loaded.default_prompts)
    assert result.fingerprints["config"] == explicit.fingerprint()
    assert result.versions["torch"] == metadata.version("torch")
    assert result.versions["POT"] == metadata.version("POT")

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    data = json.loads(result.to_json(), parse_constant=refuse)
    race = next(a for a in data["attributes"] if a["name"] == "race")
    assert race["metrics"]["auc"]["value"] == result.attribute("race").report.auc.value
    assert data["config"]["attributes"] == list(ATTRIBUTES)
    assert race["summary"].startswith("race")


def test_raw_cosine_divides_the_logit_by_the_logit_scale(table, loaded, result) -> None:
    config = AuditConfig(attributes=("gender",), use_logit_scale=False, threshold="fixed",
                         **QUICK)
    raw = run_audit(table, loaded, config).predictions["probability"].to_numpy()
    scaled = result.predictions["probability"].to_numpy()
    np.testing.assert_allclose(logit(raw) * loaded.logit_scale, logit(scaled), rtol=1e-6,
                               atol=1e-9)


def test_linear_probe_scores_and_records_no_prompts(table, loaded, result) -> None:
    config = AuditConfig(attributes=("race",), scorer="linear-probe", **QUICK)
    probe = run_audit(table, loaded, config)
    assert probe.model["prompts"] is None
    assert not np.allclose(probe.predictions["probability"], result.predictions["probability"])
    assert probe.threshold.chosen_on == "val"


def test_unknown_attribute_lists_the_available_ones(table, loaded) -> None:
    with pytest.raises(DataError, match="'religion' is not in the data; available: race, "
                                        "gender, ethnicity, language, maritalstatus"):
        run_audit(table, loaded, AuditConfig(attributes=("race&religion",)))


def test_empty_prompts_are_refused_before_any_embedding(table, loaded, monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("embeddings computed before the prompts were checked")

    monkeypatch.setattr(audit_module, "compute_embeddings", never)
    with pytest.raises(ConfigError, match=r"prompts for class 0 .* are empty"):
        run_audit(table, loaded, AuditConfig(prompts={0: ("  ",), 1: ("glaucoma",)}))


@pytest.fixture(scope="module")
def degenerate_table(table) -> PairTable:
    """Validation and test pairs only; a single gender; every test pair without glaucoma."""
    frame = table.frame[table.frame["split"] != "train"].copy()
    frame["gender"] = 0
    frame.loc[frame["split"] == "test", "label"] = 0
    return PairTable(frame, dict(table.attributes), source=table.source, name="degenerate")


def test_a_named_attribute_with_a_single_group_is_refused(degenerate_table, loaded) -> None:
    with pytest.raises(DataError, match="attribute 'gender' has a single group \\(Female\\) in "
                                        "split 'test'"):
        run_audit(degenerate_table, loaded, AuditConfig(attributes=("gender",)))


def test_single_class_split_reports_auc_undefined_without_crashing(degenerate_table,
                                                                   loaded) -> None:
    audited = run_audit(degenerate_table, loaded, AuditConfig(min_n=1, n_bootstrap=20,
                                                              n_permutations=5))
    assert audited.overall["auc"] is None and audited.overall["positives"] == 0
    assert any(w.startswith("AUC undefined: split 'test' holds a single class")
               for w in audited.warnings)
    assert any("'gender' has a single group" in w and "skipped" in w for w in audited.warnings)
    assert "gender" not in [a.name for a in audited.attributes]
    for attribute in audited.attributes:
        assert attribute.report.auc.value is None
        assert all(group.auc.value is None for group in attribute.report.groups)
        assert all(g.sinkhorn is not None for v in attribute.distributions for g in v.groups
                   if g.n > 0)


def test_above_sinkhorn_max_pairs_the_divergences_come_from_summaries_with_a_note(
        table, loaded, monkeypatch) -> None:
    config = AuditConfig(attributes=("gender",), sinkhorn_max_pairs=10, n_bootstrap=0,
                         n_permutations=5)
    exact = run_audit(table, loaded, replace(config, sinkhorn_max_pairs=48))
    audited = run_audit(table, loaded, config)
    assert audited.warnings == (
        "Sinkhorn divergences of the 48 audited pairs (above sinkhorn_max_pairs = 10) are "
        "solved on summaries of each distribution by about 256 weighted atoms: within 1e-05 "
        "times the statistic's variance of the exact solve as measured (bench/bench_sinkhorn.py "
        "--summaries), under 0.1% of any divergence above 0.01 times the variance; W2^2/2 and "
        "the p-values are exact",)
    assert exact.warnings == ()
    pairs = zip(audited.attribute("gender").distributions, exact.attribute("gender").distributions,
                strict=True)
    for view, exact_view in pairs:  # every sample is within 256 values: summaries are exact
        assert [g.sinkhorn for g in view.groups] == pytest.approx(
            [g.sinkhorn for g in exact_view.groups], rel=1e-10)
        assert [g.w2 for g in view.groups] == [g.w2 for g in exact_view.groups]
    # With 8-atom summaries the audit reports exactly what the summarised solve gives.
    monkeypatch.setattr(audit_module.ot, "summarised_group_sinkhorn_divergences",
                        functools.partial(summarised_group_sinkhorn_divergences, max_atoms=8))
    coarse = run_audit(table, loaded, config)
    frame = coarse.predictions
    for view, exact_view in zip(coarse.attribute("gender").distributions,
                                exact.attribute("gender").distributions, strict=True):
        names = [group.group for group in view.groups]
        codes = frame["gender"].map(names.index).to_numpy()
        expected = summarised_group_sinkhorn_divergences(
            frame[view.statistic].to_numpy(copy=True), codes, len(names), blur=view.blur,
            max_atoms=8)
        assert [g.sinkhorn for g in view.groups] == pytest.approx(expected.divergences,
                                                                  rel=1e-12)
        assert expected.population_moved > 0
        assert [g.sinkhorn for g in view.groups] != pytest.approx(
            [g.sinkhorn for g in exact_view.groups], rel=1e-6)


def test_a_shared_memo_recomputes_only_the_stages_a_setting_reads(table, loaded) -> None:
    """With a memo, each changed setting recomputes only its stages, and every result equals
    a fresh audit without a memo (the memo only saves time)."""
    memo = Memo()
    computed: list[str] = []

    def recording(key, compute):
        return memo(key, lambda: computed.append(key[0]) or compute())

    base = replace(CONFIG, attributes=("race",), n_bootstrap=50, n_permutations=20)
    changes = [
        ({}, ["probabilities", "pair_scores", "report", "distances", "distances"]),
        ({"min_n": 40}, ["report"]),
        ({"threshold": "fixed"}, ["report"]),
        ({"n_permutations": 30}, ["distances", "distances"]),
        ({"prompts": {1: ["glaucoma"], 0: ["healthy eye"]}}, ["probabilities", "report"]),
        ({}, []),
    ]
    for change, expected in changes:
        computed.clear()
        config = replace(base, **change)
        memoized = run_audit(table, loaded, config, memo=recording)
        assert computed == expected, change
        fresh = run_audit(table, loaded, config)
        assert memoized.to_dict() | {"created": None} == fresh.to_dict() | {"created": None}


def test_sampled_pair_scores_are_announced(table, loaded, monkeypatch) -> None:
    real = audit_module.pair_scores
    monkeypatch.setattr(audit_module, "pair_scores",
                        lambda *a, **k: real(*a, **k, max_negatives=20))
    result = run_audit(table, loaded, replace(CONFIG, attributes=("race",), **QUICK))
    n = result.overall["n"]
    assert (f"per-pair loss, rank and margin of the {n:,} pairs are estimated against 20 "
            "sampled notes of the split (exact up to 21 pairs; fairvlm.scoring.pairs)"
            ) in result.warnings
    monkeypatch.undo()
    assert not any("sampled" in line for line in run_audit(
        table, loaded, replace(CONFIG, attributes=("race",), **QUICK)).warnings)
