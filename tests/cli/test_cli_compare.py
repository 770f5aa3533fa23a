"""`fairvlm compare` in-process: two checkpoints and a finished run's folder compared, the
files it writes, the printed table against the JSON, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import Outcome, run_fairvlm
from model_files import random_demo_checkpoint

from fairvlm.compare import HTML_FILE, JSON_FILE
from fairvlm.metrics import Change
from fairvlm.train.config import TrainConfig
from fairvlm.train.loop import train

QUICK = ["--attribute", "race", "--split", "train", "--min-n", "30", "--bootstrap", "60",
         "--permutations", "0", "--device", "cpu", "--quiet"]


def run_cli(*argv: object) -> Outcome:
    return run_fairvlm("compare", *argv)


@pytest.fixture(scope="module")
def finished_run(small_demo_dir: Path, tiny_checkpoint: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch fine-tune of ``tiny_checkpoint`` (projections, a few steps)."""
    run_dir = tmp_path_factory.mktemp("compare-run") / "run"
    train(TrainConfig(data=str(small_demo_dir), model=str(tiny_checkpoint), attribute="race",
                      scope="projections", epochs=1, lr=1e-3, eval_min_n=1, n_bootstrap=0,
                      device="cpu"), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def compared(small_demo_dir: Path, tiny_checkpoint: Path, finished_run: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Outcome]:
    folder = tmp_path_factory.mktemp("compare")
    other = random_demo_checkpoint(folder / "other.safetensors", seed=11)
    out = folder / "out"
    return out, run_cli("--data", small_demo_dir, "--model", tiny_checkpoint, "--model", other,
                        "--model", finished_run, "--out", out, *QUICK)


def test_compare_writes_the_report_and_prints_every_change(compared, finished_run,
                                                           tiny_checkpoint: Path) -> None:
    out, outcome = compared
    assert outcome.status == 0, outcome.err
    assert (out / HTML_FILE).is_file() and str(out / JSON_FILE) in outcome.out
    data = json.loads((out / JSON_FILE).read_text())
    labels = [model["label"] for model in data["models"]]
    assert labels == [tiny_checkpoint.name, "other.safetensors", f"run {finished_run.name}"]
    assert data["models"][2]["origin"]["kind"] == "run"
    selected = json.loads((finished_run / "eval.json").read_text())["checkpoint"]
    assert data["models"][2]["spec"] == str(finished_run / selected)
    hidden = next(line for line in outcome.out.splitlines() if line.startswith("AUC Asian "))
    assert hidden.split()[3:] == ["undefined", "undefined", "–", "undefined", "–"]  # no Δ
    assert "nan" not in outcome.out and ">nan<" not in (out / HTML_FILE).read_text()
    lines = outcome.out.splitlines()
    assert lines[0].startswith(f"split train; baseline {tiny_checkpoint.name};")
    auc = next(line for line in lines if line.startswith("AUC  "))
    for row in data["table"]:
        if row["metric"] == "AUC" and row["model"] != labels[0]:
            shown = Change(row["delta"], row["delta_low"], row["delta_high"]).text()
            verdict = {True: " better", False: " worse"}.get(row["improved"], "")
            assert shown + verdict in auc


def test_one_model_or_an_unfinished_folder_is_one_line(small_demo_dir: Path,
                                                       tiny_checkpoint: Path,
                                                       tmp_path: Path) -> None:
    outcome = run_cli("--data", small_demo_dir, "--model", tiny_checkpoint, "--out",
                      tmp_path / "out", *QUICK)
    assert (outcome.status, outcome.err) == (
        2, "error: --model: 1 given; expected two or more (the first is the baseline)\n")
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    outcome = run_cli("--data", small_demo_dir, "--model", tiny_checkpoint, "--model", empty,
                      "--out", tmp_path / "out", *QUICK)
    assert outcome.status == 2
    assert outcome.err == (f"error: {empty}: a folder that is not a finished run (no eval.json "
                           "naming an existing checkpoint); expected a done fine-tune's run "
                           "folder or a model spec\n")
    assert not (tmp_path / "out").exists()
