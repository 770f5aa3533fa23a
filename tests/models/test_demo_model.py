"""The demo model: trained at first use (a few steps here), recorded, reused, repeatable."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from fairvlm.data import load_dataset
from fairvlm.data.table import PairTable
from fairvlm.errors import DataError
from fairvlm.models import DEMO_PROMPTS, DemoTraining, ensure_demo_model, load_model
from fairvlm.models import demo_model as demo
from fairvlm.models.architectures import CONFIG_DIR, DEMO_ARCH, build_model
from fairvlm.models.loading import weights_fingerprint

TINY = DemoTraining(epochs=1, batch_size=4, max_steps=2)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A FAIRVLM_HOME of this module's own, so no other test's demo model is seen."""
    folder = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FAIRVLM_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def trained(home: Path, small_demo_dir: Path) -> Path:
    """The demo model trained for two steps on the small demo set."""
    return ensure_demo_model(small_demo_dir, training=TINY, progress=False)


def _refuse_training(*args, **kwargs):
    raise AssertionError("the demo model was trained again")


def test_trained_once_then_reused(home: Path, trained: Path, small_demo_dir: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    weights = trained
    assert weights == home / "demo" / "model" / demo.WEIGHTS_FILE and weights.is_file()
    info = json.loads((weights.parent / demo.INFO_FILE).read_text())
    assert info["data_fingerprint"] == load_dataset(small_demo_dir).fingerprint()
    assert info["training"] == asdict(TINY) and info["seed"] == TINY.seed
    assert info["model_config"] == json.loads((CONFIG_DIR / f"{DEMO_ARCH}.json").read_text())
    assert len(info["step_losses"]) == 2 and all(math.isfinite(x) for x in info["step_losses"])
    assert info["seconds"]["total"] > 0 and info["train_pairs"] > 0
    assert sorted(p.name for p in weights.parent.iterdir()) == [demo.INFO_FILE,
                                                                demo.WEIGHTS_FILE]

    monkeypatch.setattr(demo, "train_demo_model", _refuse_training)
    assert ensure_demo_model(small_demo_dir, training=TINY, progress=False) == weights
    assert ensure_demo_model(small_demo_dir, progress=False) == weights
    loaded = load_model("demo", device="cpu")
    assert loaded.arch == DEMO_ARCH and loaded.default_prompts == DEMO_PROMPTS
    assert loaded.fingerprint == load_model(str(weights), device="cpu").fingerprint
    with pytest.raises(AssertionError, match="trained again"):
        ensure_demo_model(small_demo_dir, training=DemoTraining(max_steps=1), progress=False)
    with pytest.raises(AssertionError, match="trained again"):
        ensure_demo_model(small_demo_dir, training=TINY, progress=False, retrain=True)


def test_training_is_repeatable(small_demo_dir: Path) -> None:
    full = load_dataset(small_demo_dir)
    table = PairTable(full.frame.iloc[:40], full.attributes)
    first, record = demo.train_demo_model(table, TINY)
    second, _ = demo.train_demo_model(table, TINY)
    assert weights_fingerprint(first) == weights_fingerprint(second)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY.seed)
        initial = build_model(DEMO_ARCH)
    assert weights_fingerprint(initial) != weights_fingerprint(first)
    assert record["steps"] == 2 and not first.training
    assert record["train_pairs"] == len(table.split_indices("train"))


def test_learning_rate_schedule() -> None:
    factor = demo._warmup_cosine(warmup_steps=4, total_steps=12)
    assert [factor(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(8) == pytest.approx(0.5) and factor(12) == pytest.approx(0.0)
    assert demo._steps_per_epoch(65, 32) == 2 and demo._steps_per_epoch(66, 32) == 3


def test_missing_data_folder(home: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        ensure_demo_model(tmp_path / "nowhere", training=TINY, progress=False)


def test_prepare_demo_model_command(trained: Path, small_demo_dir: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from fairvlm.cli import prepare_demo_model

    parser = argparse.ArgumentParser()
    prepare_demo_model.register(parser.add_subparsers())
    args = parser.parse_args(["prepare-demo-model", "--data", str(small_demo_dir), "--quiet"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"demo model ready: {trained} (") and "2 steps" in out
