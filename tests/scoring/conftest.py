"""Fixtures for scoring tests: a small pair table of .npy images and an untrained model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from model_files import random_demo_checkpoint

from fairvlm.data.table import Attribute, PairTable
from fairvlm.models import LoadedModel, load_model

SPLIT_PATTERN = ("train", "train", "val", "test", "test")


def make_table(folder: Path, n: int = 30, seed: int = 0) -> PairTable:
    """``n`` pairs of random 40x40 images saved as .npy, notes, labels and a race column."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        path = folder / f"img{i:03d}.npy"
        np.save(path, rng.random((40, 40)).astype(np.float32))
        label = (i // len(SPLIT_PATTERN)) % 2
        cdr = rng.uniform(0.55, 0.9) if label else rng.uniform(0.15, 0.5)
        rows.append({"id": f"pair{i:03d}", "split": SPLIT_PATTERN[i % len(SPLIT_PATTERN)],
                     "image": str(path), "text": f"Disc: C/D {cdr:.2f}, visit {i}.",
                     "label": label, "race": i % 3})
    return PairTable(pd.DataFrame(rows), {"race": Attribute("race", {0: "A", 1: "B", 2: "W"})},
                     name="npy-table")


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> PairTable:
    return make_table(tmp_path_factory.mktemp("npy-table"))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """The demo architecture, seeded random weights, loaded through a checkpoint file."""
    path = random_demo_checkpoint(tmp_path_factory.mktemp("model") / "model.safetensors", seed=99)
    return load_model(str(path), device="cpu")
