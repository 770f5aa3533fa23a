"""One finished fine-tune shared by the loop, resume and DDP tests (torch steps are slow).

The reference run: the small demo, the tiny random model (``tiny_checkpoint``), scope
``projections``, 2 epochs, fairness term on, DBPM in ``drop`` mode judging from epoch 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fairvlm.runs import RunDir
from fairvlm.train.config import TrainConfig

REFERENCE_SETTINGS: dict[str, object] = {
    "attribute": "race", "scope": "projections", "epochs": 2, "lr": 1e-3, "warmup": 1,
    "beta_np": 1.0, "beta_fp": 1.0, "lam": 0.5, "dbpm": "drop", "eval_min_n": 1,
    "n_bootstrap": 20, "device": "cpu",
}
_FLAG_NAMES = {"lam": "--lambda", "n_bootstrap": "--bootstrap"}


@pytest.fixture(scope="session")
def reference_config(small_demo_dir: Path, tiny_checkpoint: Path
                     ) -> Callable[..., TrainConfig]:
    """``reference_config(**changes)``: the reference run's settings, with some changed."""
    def build(**changes: object) -> TrainConfig:
        return TrainConfig(data=str(small_demo_dir), model=str(tiny_checkpoint),
                           **{**REFERENCE_SETTINGS, **changes})
    return build


@pytest.fixture(scope="session")
def reference_flags(small_demo_dir: Path, tiny_checkpoint: Path) -> list[str]:
    """``fairvlm train`` options giving the reference run's config.json."""
    flags = ["--data", str(small_demo_dir), "--model", str(tiny_checkpoint)]
    for field, value in REFERENCE_SETTINGS.items():
        flags += [_FLAG_NAMES.get(field, "--" + field.replace("_", "-")), str(value)]
    return flags


@pytest.fixture(scope="session")
def reference_run(reference_config: Callable[..., TrainConfig],
                  tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """The finished reference run (trained once per session)."""
    from fairvlm.train.loop import train

    run_dir = tmp_path_factory.mktemp("reference-run") / "run"
    assert train(reference_config(), run_dir).state == "done"
    return RunDir(run_dir)
