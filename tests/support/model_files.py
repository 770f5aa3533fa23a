"""Checkpoint files made by the tests: the demo architecture with seeded random weights, a copy
whose architecture cannot be inferred, and a copy that records class prompts."""

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


def with_prompts(source: str | Path, path: Path, prompts: dict[int, list[str]]) -> Path:
    """Save the .safetensors file ``source`` again at ``path`` with its architecture and
    ``prompts`` recorded, as fairvlm saves a fine-tune's checkpoints; return ``path``."""
    from fairvlm.models import load_model, save_checkpoint

    loaded = load_model(str(source), device="cpu")
    save_checkpoint(loaded.model, path, arch=loaded.arch, prompts=prompts)
    return path
