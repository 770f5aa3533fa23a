"""Shared fixtures: an isolated FAIRVLM_HOME and one small demo data set per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from model_files import random_demo_checkpoint

# Point fairvlm's home at a throwaway folder before any test imports fairvlm.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="fairvlm-test-home-"))
os.environ["FAIRVLM_HOME"] = str(_SESSION_HOME)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's throwaway home (one was left in the temp folder per run)."""
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def session_home() -> Path:
    """The FAIRVLM_HOME of this test session."""
    return _SESSION_HOME


@pytest.fixture(scope="session")
def small_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 240-subject demo data set (64 px images) in the FairVLMed layout, built once."""
    from fairvlm.data.demo import DemoConfig, generate_demo

    out = tmp_path_factory.mktemp("small-demo")
    generate_demo(out, DemoConfig(n_subjects=240, image_size=64, seed=7))
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo architecture with seeded random weights (never trained), as a .safetensors file.

    Loading it with ``load_model(str(path))`` takes about a second, unlike ``load_model("demo")``,
    which trains the demo model on first use.
    """
    return random_demo_checkpoint(
        tmp_path_factory.mktemp("tiny-model") / "tiny-demo-rn.safetensors", seed=2024)
