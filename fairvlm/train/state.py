"""Checkpoints of a fine-tune, complete enough to resume it exactly.

A checkpoint at (epoch, step) is four files in the run's ``checkpoints/`` folder, all written
atomically (temporary file, fsync, rename) and read without executing code:

``e<epoch>-s<step>.optimizer.safetensors``
    the AdamW moments and step counts (``state.<param index>.<name>``) and the torch random
    number generator states (``rng.cpu``, ``rng.cuda.<i>``);
``e<epoch>-s<step>.memory.npz``
    the DBPM loss memory (:meth:`fairvlm.mining.LossMemory.save`) at that moment;
``e<epoch>-s<step>.state.json``
    where training stands (:class:`Progress`);
``e<epoch>-s<step>.safetensors``
    the model weights, written last (:func:`fairvlm.models.save_checkpoint`, with the
    architecture in its metadata, so the file is itself a model spec). Its presence marks the
    checkpoint complete: :meth:`fairvlm.runs.RunDir.latest_checkpoint` only lists these.

``step`` counts optimiser steps from the start of the run; ``epoch`` is the epoch the step
belongs to. A process killed at any moment leaves the previous complete checkpoint intact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from fairvlm.errors import DataError
from fairvlm.mining import LossMemory
from fairvlm.models.checkpoints import read_checkpoint, save_checkpoint
from fairvlm.paths import atomic_write
from fairvlm.runs import CHECKPOINT_PATTERN, write_json_atomic
from fairvlm.train.worker import kill_point

OPTIMIZER_SUFFIX = ".optimizer.safetensors"
MEMORY_SUFFIX = ".memory.npz"
STATE_SUFFIX = ".state.json"


@dataclass
class Progress:
    """Where a run stands at a checkpoint (``<stem>.state.json``).

    Attributes
    ----------
    epoch
        The epoch of the checkpoint's last step (0-based).
    epoch_step
        Steps done in that epoch (equal to the steps per epoch at the end of the epoch).
    step
        Steps done since the start of the run.
    epoch_end
        Whether the epoch was complete and evaluated (a selectable checkpoint).
    selection
        The model-selection record so far (:class:`fairvlm.train.evaluation.Selection`).
    """

    epoch: int
    epoch_step: int
    step: int
    epoch_end: bool
    selection: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """The files of one checkpoint, named after its model file."""

    model_path: Path

    @property
    def stem(self) -> str:
        return self.model_path.name.removesuffix(".safetensors")

    @property
    def optimizer_path(self) -> Path:
        return self.model_path.with_name(self.stem + OPTIMIZER_SUFFIX)

    @property
    def memory_path(self) -> Path:
        return self.model_path.with_name(self.stem + MEMORY_SUFFIX)

    @property
    def state_path(self) -> Path:
        return self.model_path.with_name(self.stem + STATE_SUFFIX)

    def files(self) -> tuple[Path, ...]:
        """Every file, the model file first (removing it first un-completes the checkpoint)."""
        return (self.model_path, self.optimizer_path, self.memory_path, self.state_path)

    def remove(self) -> None:
        for path in self.files():
            path.unlink(missing_ok=True)


def save(checkpoint: Checkpoint, *, model: torch.nn.Module, arch: str,
         prompts: Mapping[int, Sequence[str]], optimizer: torch.optim.Optimizer,
         memory: LossMemory, progress: Progress) -> None:
    """Write the four files, the model weights last (with the architecture and the class
    prompts the run evaluates with, so the file loads and scores as the run did)."""
    tensors = {f"state.{index}.{name}": value.detach().cpu().contiguous()
               for index, state in optimizer.state_dict()["state"].items()
               for name, value in state.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for index, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = rng
    with atomic_write(checkpoint.optimizer_path) as handle:
        handle.write(safetensors.torch.save(tensors))
        kill_point("checkpoint")
    memory.save(checkpoint.memory_path)
    write_json_atomic(checkpoint.state_path, asdict(progress))
    kill_point("checkpoint")
    save_checkpoint(model, checkpoint.model_path, arch=arch, prompts=prompts)


def restore(checkpoint: Checkpoint, *, model: torch.nn.Module,
            optimizer: torch.optim.Optimizer) -> tuple[LossMemory, Progress]:
    """Load weights, optimizer moments and RNG states in place; return the memory and progress.

    Raises
    ------
    DataError
        A file of the checkpoint is missing or unreadable.
    """
    for path in checkpoint.files():
        if not path.is_file():
            raise DataError(f"{path}: missing; expected the complete checkpoint "
                            f"{checkpoint.stem} (resume from an earlier one by deleting "
                            f"{checkpoint.model_path.name})")
    weights, _ = read_checkpoint(checkpoint.model_path)
    model.load_state_dict(weights, strict=True)
    tensors, _ = read_checkpoint(checkpoint.optimizer_path)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state,
                               "param_groups": optimizer.state_dict()["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count())
                   if f"rng.cuda.{i}" in tensors]
    if cuda_states:
        torch.cuda.set_rng_state_all(cuda_states)
    try:
        progress = Progress(**json.loads(checkpoint.state_path.read_text()))
    except (json.JSONDecodeError, TypeError):
        raise DataError(f"{checkpoint.state_path}: not a fairvlm checkpoint state; expected "
                        "the JSON written with the checkpoint") from None
    return LossMemory.load(checkpoint.memory_path), progress


def complete_checkpoints(folder: Path) -> list[Checkpoint]:
    """Complete checkpoints in ``folder``, oldest first (by step, then epoch)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and path.is_file():
            found.append(((int(match[2]), int(match[1])), Checkpoint(path)))
    return [checkpoint for _, checkpoint in sorted(found)]
