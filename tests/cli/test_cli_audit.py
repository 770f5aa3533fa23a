"""`fairvlm audit` in-process: three files, numbers reproducible from the CSV, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import Outcome, run_fairvlm
from fairlearn.metrics import demographic_parity_difference
from sklearn.metrics import roc_auc_score

from fairvlm.data import load_dataset

QUICK = ["--bootstrap", "100", "--permutations", "10", "--quiet"]


def run_cli(*argv: object) -> Outcome:
    return run_fairvlm("audit", *argv)


@pytest.fixture(scope="module")
def audit_out(small_demo_dir: Path, tiny_checkpoint: Path,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Outcome]:
    out = tmp_path_factory.mktemp("cli-audit") / "report"
    outcome = run_cli("--data", small_demo_dir, "--model", tiny_checkpoint, "--out", out,
                      "--attribute", "race", "--attribute", "gender", "--attribute",
                      "race&gender", "--min-n", "5", "--device", "cpu", *QUICK)
    return out, outcome


def test_audit_writes_three_files_and_prints_a_summary(audit_out) -> None:
    out, outcome = audit_out
    assert outcome.status == 0, outcome.err
    for name in ("metrics.json", "predictions.csv", "report.html"):
        assert (out / name).is_file()
        assert str(out / name) in outcome.out
    lines = outcome.out.splitlines()
    assert lines[0].startswith("test: 48 pairs")
    header = next(line for line in lines if line.startswith("attribute"))
    assert header.split()[:4] == ["attribute", "groups", "AUC", "ES-AUC"]
    assert any(line.startswith("race&gender ") for line in lines)


def test_predictions_have_one_row_per_test_pair(audit_out, small_demo_dir: Path) -> None:
    frame = pd.read_csv(audit_out[0] / "predictions.csv", keep_default_na=False)
    test_files = sorted(p.stem for p in (small_demo_dir / "Test").glob("data_*.npz"))
    assert sorted(frame["id"]) == test_files
    assert set(frame["split"]) == {"test"}


def test_metrics_json_is_reproducible_from_predictions_csv(audit_out) -> None:
    out, _ = audit_out
    metrics = json.loads((out / "metrics.json").read_text())
    frame = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert metrics["overall"]["auc"] == pytest.approx(roc_auc_score(frame["label"],
                                                                    frame["probability"]))
    for attribute in metrics["attributes"]:
        name = attribute["name"]
        for group in attribute["metrics"]["groups"]:
            members = frame[frame[name] == group["name"]]
            assert group["n"] == len(members)
            assert group["positives"] == int(members["label"].sum())
            if group["auc"]["value"] is not None:
                assert group["auc"]["value"] == pytest.approx(
                    roc_auc_score(members["label"], members["probability"]), abs=1e-12)
    gender = next(a for a in metrics["attributes"] if a["name"] == "gender")
    assert gender["metrics"]["dpd"]["value"] == pytest.approx(demographic_parity_difference(
        frame["label"], frame["prediction"], sensitive_features=frame["gender"]))
    threshold = metrics["threshold"]["value"]
    assert ((frame["probability"] >= threshold).astype(int) == frame["prediction"]).all()


def _one_line_error(outcome: Outcome) -> str:
    assert outcome.status == 2
    lines = outcome.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.err
    return lines[0]


def test_unknown_attribute_lists_the_available_ones(small_demo_dir, tiny_checkpoint,
                                                    tmp_path) -> None:
    line = _one_line_error(run_cli("--data", small_demo_dir, "--model", tiny_checkpoint,
                                   "--out", tmp_path, "--attribute", "religion", *QUICK))
    assert "'religion' is not in the data; available: race, gender, ethnicity, language, " \
           "maritalstatus" in line
    assert not (tmp_path / "metrics.json").exists()


def test_unknown_model_spec_lists_the_accepted_forms(small_demo_dir, tmp_path) -> None:
    line = _one_line_error(run_cli("--data", small_demo_dir, "--model", "not-a-model",
                                   "--out", tmp_path, *QUICK))
    assert "unknown model spec 'not-a-model'" in line
    assert "ARCH:TAG" in line and "hf-hub:ORG/NAME" in line and ".safetensors" in line


def test_empty_prompts_file_is_one_line(small_demo_dir, tiny_checkpoint, tmp_path) -> None:
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"1": ["glaucoma"], "0": []}))
    line = _one_line_error(run_cli("--data", small_demo_dir, "--model", tiny_checkpoint,
                                   "--prompts", prompts, "--out", tmp_path, *QUICK))
    assert "prompts for class 0 (no glaucoma) are empty" in line


def test_single_class_split_says_auc_undefined(small_demo_dir, tiny_checkpoint,
                                               tmp_path) -> None:
    """A manifest whose test pairs all lack glaucoma: the audit completes and says why the
    AUC is missing."""
    frame = load_dataset(small_demo_dir).frame
    frame = frame[frame["split"] != "train"].copy()
    frame.loc[frame["split"] == "test", "label"] = 0
    manifest = tmp_path / "manifest.csv"
    frame[["id", "split", "image", "text", "label", "race"]].to_csv(manifest, index=False)
    outcome = run_cli("--data", manifest, "--model", tiny_checkpoint, "--out", tmp_path / "out",
                      "--attribute", "race", "--min-n", "1", *QUICK)
    assert outcome.status == 0, outcome.err
    assert "AUC undefined" in outcome.out
    assert "warning: AUC undefined: split 'test' holds a single class (48 pairs, 0 positive)" \
        in outcome.out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["overall"]["auc"] is None
    assert metrics["attributes"][0]["metrics"]["auc"]["note"] == \
        "the audited pairs hold a single class"


def test_above_sinkhorn_max_pairs_the_divergences_come_from_summaries_with_a_note(
        small_demo_dir, tiny_checkpoint, tmp_path) -> None:
    outcome = run_cli("--data", small_demo_dir, "--model", tiny_checkpoint, "--out", tmp_path,
                      "--attribute", "gender", "--sinkhorn-max-pairs", "10", *QUICK)
    assert outcome.status == 0, outcome.err
    assert ("warning: Sinkhorn divergences of the 48 audited pairs (above sinkhorn_max_pairs = "
            "10) are solved on summaries of each distribution by about 256 weighted atoms: "
            "within 1e-05 times the statistic's variance") in outcome.out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["sinkhorn_max_pairs"] == 10
    groups = [g for view in metrics["attributes"][0]["distributions"] for g in view["groups"]]
    assert len(groups) == 4 and all(g["sinkhorn"] > 0 for g in groups)
    assert ("S is solved on summaries of the distributions (population above "
            "sinkhorn_max_pairs = 10; see Read with care).") in (tmp_path / "report.html"
                                                                  ).read_text()
