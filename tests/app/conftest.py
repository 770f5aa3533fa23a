"""Fixtures shared by the AppTest page tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def app_home(tmp_path_factory: pytest.TempPathFactory, small_demo_dir: Path,
             tiny_checkpoint: Path) -> Path:
    """A FAIRVLM_HOME (the only data root) holding the small demo and the tiny checkpoint."""
    home = tmp_path_factory.mktemp("app-home")
    shutil.copytree(small_demo_dir, home / "demo" / "data")
    shutil.copy(tiny_checkpoint, home / "tiny.safetensors")
    return home


@pytest.fixture()
def fresh_home(tmp_path: Path, small_demo_dir: Path, tiny_checkpoint: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    """A FAIRVLM_HOME of this test alone (and the only data root) with the small demo and the
    tiny checkpoint, set in the environment."""
    home = tmp_path / "home"
    shutil.copytree(small_demo_dir, home / "demo" / "data")
    shutil.copy(tiny_checkpoint, home / "tiny.safetensors")
    monkeypatch.setenv("FAIRVLM_HOME", str(home))
    monkeypatch.setenv("FAIRVLM_DATA_ROOTS", str(home))
    return home
