"""Checkpoint files made by the tests: the demo architecture with seeded random weights, and a
copy whose architecture cannot be inferred."""

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


def unnamed_checkpoint(source: Path, path: Path) -> Path:
    """Save the tensors of the .safetensors file ``source`` to ``path`` without the
    architecture name fairvlm writes, and with ``logit_scale`` as a one-element vector (as some
    training code keeps it), so the architecture cannot be inferred from the file; return
    ``path``. Loaded with the architecture named, it holds the same weights as ``source``."""
    import safetensors.torch

    tensors = safetensors.torch.load_file(str(source))
    tensors["logit_scale"] = tensors["logit_scale"].reshape(1)
    safetensors.torch.save_file(tensors, str(path))
    return path
