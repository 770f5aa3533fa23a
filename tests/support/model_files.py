"""Checkpoint files made by the tests: the demo architecture with seeded random weights."""

from __future__ import annotations

from pathlib import Path


def random_demo_checkpoint(path: Path, seed: int) -> Path:
    """Save the demo architecture with weights drawn from ``seed`` (never trained) to ``path``
    (.safetensors), leaving torch's global random state as it was; return ``path``."""
    import torch

    from fairvlm.models import save_checkpoint
    from fairvlm.models.architectures import DEMO_ARCH, build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(DEMO_ARCH)
    save_checkpoint(model, path, arch=DEMO_ARCH)
    return path
