"""`fairvlm train` and `fairvlm mine` in-process: a complete run folder, the summary, the
flagged-pair export, and one-line errors for bad settings that leave an existing run as it was.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from cli_runner import Outcome
from cli_runner import run_fairvlm as run_cli

from fairvlm.data import load_dataset
from fairvlm.metrics import Change
from fairvlm.mining import LossMemory, flagged_pairs
from fairvlm.train.config import read_exclusions

SETTINGS = ["--attribute", "race", "--scope", "projections", "--epochs", "1", "--lr", "1e-3",
            "--eval-min-n", "1", "--bootstrap", "20", "--device", "cpu", "--quiet"]
RUN_FILES = ("config.json", "status.json", "metrics.jsonl", "memory.npz", "eval.json",
             "log.txt")


@pytest.fixture(scope="module")
def data_flags(small_demo_dir: Path, tiny_checkpoint: Path) -> list[str]:
    return ["--data", str(small_demo_dir), "--model", str(tiny_checkpoint)]


@pytest.fixture(scope="module")
def trained(data_flags, tmp_path_factory) -> tuple[Path, Outcome]:
    run_dir = tmp_path_factory.mktemp("cli-train") / "run"
    return run_dir, run_cli("train", *data_flags, *SETTINGS, "--run-dir", run_dir)


def test_train_writes_a_complete_run_folder_and_a_summary(trained):
    run_dir, outcome = trained
    assert outcome.status == 0, outcome.err
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    model_files = [p for p in (run_dir / "checkpoints").glob("*.safetensors")
                   if ".optimizer" not in p.name]
    assert len(model_files) == 1
    stem = model_files[0].name.removesuffix(".safetensors")
    for suffix in (".optimizer.safetensors", ".memory.npz", ".state.json"):
        assert (run_dir / "checkpoints" / (stem + suffix)).is_file()
    evaluation = json.loads((run_dir / "eval.json").read_text())
    lines = outcome.out.splitlines()
    assert lines[1] == "epoch 1 selected by validation ES-AUC."  # counted from 1, as the app
    val = next(line for line in lines if line.startswith("val "))
    assert float(val.split()[1]) == pytest.approx(evaluation["val"]["auc"]["value"], abs=5e-4)
    assert float(val.split()[2]) == pytest.approx(evaluation["val"]["es_auc"]["value"],
                                                  abs=5e-4)
    assert any(line.startswith("test ") for line in lines)
    es_auc = next(line for line in lines if line.startswith("  ES-AUC "))
    change = evaluation["change_from_start"]["summary"]["es_auc"]
    assert es_auc.split()[1:4] == [f"{evaluation['start_test']['es_auc']:.3f}", "->",
                                   f"{evaluation['test']['es_auc']['value']:.3f}"]
    assert es_auc.split()[4] == Change.from_dict(change).text().split()[0]
    assert es_auc.endswith({0: "within noise", 1: "higher", -1: "lower"}[change["sign"]])
    flagged = evaluation["flagged"]
    assert f"{flagged['faulty']} faulty, {flagged['noisy']} noisy" in lines[-1]


def test_mine_lists_and_exports_the_flagged_pairs(trained, small_demo_dir, tmp_path):
    run_dir, _ = trained
    csv_path, json_path = tmp_path / "flagged.csv", tmp_path / "flagged.json"
    outcome = run_cli("mine", "--run-dir", run_dir, "--out", csv_path)
    assert outcome.status == 0, outcome.err
    assert run_cli("mine", "--run-dir", run_dir, "--out", json_path).status == 0
    exported = pd.read_csv(csv_path, dtype={"id": str})
    assert list(exported.columns) == ["id", "kind", "score", "first_flagged_epoch",
                                      "mean_loss", "group", "label", "text"]
    verdict = flagged_pairs(LossMemory.load(run_dir / "memory.npz"))
    assert len(verdict) > 0
    assert exported["id"].tolist() == verdict["id"].tolist()
    assert exported["kind"].tolist() == ["faulty" if f else "noisy"
                                         for f in verdict["is_faulty_issue"]]
    table = load_dataset(small_demo_dir).frame.set_index("id")
    assert exported["text"].tolist() == table.loc[exported["id"], "text"].tolist()
    assert exported["label"].tolist() == table.loc[exported["id"], "label"].tolist()
    races = {0: "Asian", 1: "Black", 2: "White"}
    assert exported["group"].tolist() == [races[c] for c in table.loc[exported["id"], "race"]]
    assert (exported["score"] > 0).all()
    assert f"{(exported['kind'] == 'faulty').sum()} faulty" in outcome.out
    assert read_exclusions(json_path) == tuple(exported["id"])  # feeds `train --exclude`
    assert read_exclusions(csv_path) == tuple(exported["id"])


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(),
                                            path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize(("changes", "message"), [
    (["--lambda", "-1"], "lambda: -1.0; expected a number >= 0"),
    (["--beta-np", "0"], "beta_np: 0.0; expected a number > 0"),
    (["--attribute", "shoe_size"], "attribute 'shoe_size' is not in the data; available: "),
    (["--attribute", "language", "--k-per-group", "4"], "larger than group 'Spanish'"),
    (["--lambda", "0.3"], "already holds another run (config.json field lam differs)"),
])
def test_bad_settings_get_one_line_and_leave_the_existing_run_alone(trained, data_flags,
                                                                    changes, message):
    run_dir, _ = trained
    before = _snapshot(run_dir)
    outcome = run_cli("train", *data_flags, *SETTINGS, *changes, "--run-dir", run_dir)
    assert outcome.status == 2
    assert outcome.err.startswith("error: ") and outcome.err.count("\n") == 1
    assert message in outcome.err
    assert _snapshot(run_dir) == before


def test_bad_settings_create_no_run_folder(data_flags, tmp_path):
    target = tmp_path / "new-run"
    outcome = run_cli("train", *data_flags, *SETTINGS, "--attribute", "shoe_size",
                      "--run-dir", target)
    assert outcome.status == 2 and not target.exists()


def test_resume_takes_no_settings_and_needs_a_run(trained, tmp_path):
    run_dir, _ = trained
    outcome = run_cli("train", "--run-dir", run_dir, "--resume", "--lambda", "1")
    assert outcome.status == 2 and "drop --lambda" in outcome.err
    outcome = run_cli("train", "--run-dir", tmp_path / "nothing", "--resume")
    assert outcome.status == 2 and "no run to resume" in outcome.err
