"""bench/experiment.py cannot rot: its helpers against independent references, and the whole
pipeline on a tiny demo (1 seed, 2 short epochs, projections scope)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_score, recall_score

_SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "experiment.py"


@pytest.fixture(scope="module")
def experiment():
    """bench/experiment.py imported as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location("fairvlm_bench_experiment", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_precision_at_k_breaks_ties_at_random_in_expectation(experiment):
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1, np.nan])
    positive = np.array([True, True, False, False, False, True])
    # top 2: the 0.9 (a hit) and one of three tied at 0.5 (one hit in three): (1 + 1/3) / 2
    assert experiment.precision_at_k(scores, positive, 2) == pytest.approx((1 + 1 / 3) / 2)
    assert experiment.precision_at_k(scores, positive, 1) == 1.0
    # NaN ranks last: all six include the NaN positive
    assert experiment.precision_at_k(scores, positive, 6) == pytest.approx(3 / 6)
    assert math.isnan(experiment.precision_at_k(scores, positive, 0))


def test_flag_quality_matches_sklearn(experiment):
    rng = np.random.default_rng(3)
    flags, positive = rng.random(200) < 0.2, rng.random(200) < 0.1
    precision, recall = experiment.flag_quality(flags, positive)
    assert precision == pytest.approx(precision_score(positive, flags))
    assert recall == pytest.approx(recall_score(positive, flags))
    assert math.isnan(experiment.flag_quality(np.zeros(5, bool), positive[:5])[0])


def test_note_cdr_reads_what_the_generator_recorded(experiment, small_demo_dir):
    from fairvlm.data import load_dataset

    table = load_dataset(small_demo_dir)
    truth = experiment.read_truth(small_demo_dir)
    parsed = np.array([experiment.note_cdr(text) for text in table.frame["text"]])
    recorded = truth.loc[table.ids, "note_cdr"].to_numpy(dtype=np.float64)
    assert np.array_equal(np.isnan(parsed), np.isnan(recorded))
    assert np.isnan(parsed).any() and not np.isnan(parsed).all()  # terse notes state no CDR
    np.testing.assert_array_equal(parsed[~np.isnan(parsed)], recorded[~np.isnan(recorded)])


def test_paired_table_counts_measurable_changes_per_seed(experiment):
    def rows(method: str, es_auc: list[float], signs: list[float] | None) -> list[dict]:
        paired = {} if signs is None else {"race_es_auc": signs, "auc": [0.0] * len(signs),
                                           "race_deodds": [math.nan] * len(signs)}
        return [{"method": method, "seed": seed, "auc": 0.8, "race_es_auc": value,
                 "race_worst_group_auc": 0.7, "race_auc_Black": 0.7, "race_deodds": 0.1,
                 **{f"paired_{c}_sign": paired[c][seed] for c in paired}}
                for seed, value in enumerate(es_auc)]

    frame = pd.DataFrame(rows("plain", [0.70, 0.72, 0.74], None)
                         + rows("dbpm", [0.71, 0.70, 0.74], [1.0, -1.0, 0.0])
                         + rows("fairvlm", [0.70, 0.72, 0.80], [1.0, 1.0, math.nan]))
    table = experiment._paired_table(frame).splitlines()
    assert table[0].endswith("| AUC: seeds measurably up/down | ES-AUC: seeds measurably "
                             "up/down | DEOdds: seeds measurably up/down |")
    assert table[2] == ("| plain: seed std | 3 | 0.000 | 0.020 | 0.000 | 0.000 | 0.000 "
                        "| — | — | — |")
    # ES-AUC differences 0.01, -0.02, 0: mean -0.0033, std 0.0153
    assert table[3].endswith("| 0/0 of 3 | 2/0 of 2 | — |")  # fairvlm (METHODS order)
    assert table[4] == ("| dbpm | 3 | 0.000 ± 0.000 | -0.003 ± 0.015 | 0.000 ± 0.000 "
                        "| 0.000 ± 0.000 | 0.000 ± 0.000 | 0/0 of 3 | 1/1 of 3 | — |")
    old_files = frame.drop(columns=[c for c in frame if c.startswith("paired_")])
    assert experiment._paired_table(old_files).splitlines()[3].endswith("| — | — | — |")


def test_tiny_experiment_writes_one_row_per_run_and_resumes(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRVLM_HOME", str(tmp_path / "unused"))  # restored after the test
    settings = experiment.Settings(
        n_subjects=160, eval_size=120, pretrain_subjects=80, image_size=64, base_epochs=1,
        epochs=2, warmup=1, scope="projections", lr=1e-3, n_bootstrap=20)
    work, out = experiment.Workspace(tmp_path / "work"), tmp_path / "out"
    lines: list[str] = []
    plan = {"methods": ["fairvlm-clean"], "seeds": [0], "log": lines.append}
    experiment.run_experiment(work, out, settings, **plan)

    frame = pd.read_csv(out / "experiment.csv")
    assert list(frame["method"]) == ["base", "fairvlm-clean"]
    truth = experiment.read_truth(work.data)
    n_swapped = int((truth["corruption"] == experiment.SWAP).sum())
    assert (frame["n_swapped"] == n_swapped).all()
    run = frame.iloc[1]
    assert run[["auc", "race_es_auc", "faulty_recall", "p_at_k_dbpm_z", "auroc_bad_pair"]
               ].notna().all()
    assert ((frame["auc_lo"] <= frame["auc"]) & (frame["auc"] <= frame["auc_hi"])).all()
    assert frame["p_at_k_oracle"].between(0, 1).all()
    assert math.isnan(frame.loc[0, "faulty_flags"])  # the base model has no DBPM memory
    saved = json.loads((out / "experiment.json").read_text())
    assert len(saved["runs"]) == 2 and saved["settings"]["epochs"] == 2
    report = (out / "experiment.md").read_text()
    assert "## Zero-shot fairness on the evaluation set: language" in report
    assert "| fairvlm-clean |" in report

    # paired differences from the plain run of the same seed, trained for them (no row of its own)
    assert len(list((work.root / "runs").glob("plain-s0-*/eval.json"))) == 1
    for column in ("auc", "race_es_auc", "race_deodds"):
        low, high, sign = (run[f"paired_{column}_{part}"] for part in ("lo", "hi", "sign"))
        assert low <= high
        assert sign == (1 if low > 0 else -1 if high < 0 else 0), column
    assert frame.loc[0, ["paired_auc_lo", "paired_auc_sign"]].isna().all()  # base: no pair

    lines.clear()
    experiment.run_experiment(work, out, settings, **plan)
    assert not any("seed 0:" in line for line in lines)  # nothing trained again
    assert len(pd.read_csv(out / "experiment.csv")) == 2
