"""Map the checkpoint layouts people have onto open_clip's state-dict names.

Layouts understood
------------------
open_clip state dict
    ``visual.*``, ``transformer.*``, ``token_embedding.weight``, ... (or ``text.*`` for models
    with a separate text module). Also an open_clip training checkpoint
    ``{"epoch", "name", "state_dict", "optimizer"}``.
OpenAI CLIP state dict
    ``clip.load(...)[0].state_dict()``: the same names as open_clip's standard ``CLIP`` class;
    a state dict taken from OpenAI's TorchScript archive also carries the integers
    ``input_resolution``, ``context_length`` and ``vocab_size``, which are dropped.
FairCLIP training checkpoint
    ``{"epoch", "model_state_dict", "optimizer_state_dict", ...}`` around an OpenAI CLIP state
    dict, saved from a model that may have been wrapped in ``DataParallel`` (``module.``
    prefixes).

Prefixes added by ``DataParallel``/``DistributedDataParallel`` (``module.``) and
``torch.compile`` (``_orig_mod.``) are removed. Weights must be finite: a checkpoint holding
NaN or inf (a diverged run) is refused naming the first such tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fairvlm.errors import ModelError

CONTAINER_KEYS: tuple[str, ...] = ("model_state_dict", "state_dict")
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
OPENAI_METADATA_KEYS: tuple[str, ...] = ("input_resolution", "context_length", "vocab_size")
_TEXT_TOWER_KEYS: tuple[str, ...] = (
    "positional_embedding", "token_embedding", "transformer", "ln_final", "text_projection",
)


@dataclass(frozen=True)
class StateDict:
    """Tensors in open_clip naming, and what the checkpoint looked like.

    ``layout`` is ``"open_clip"``, ``"openai"`` (OpenAI TorchScript metadata present) or
    ``"fairclip"`` (a ``model_state_dict`` container); ``OpenAI``-derived layouts imply
    QuickGELU activations.
    """

    tensors: dict[str, torch.Tensor]
    layout: str

    @property
    def openai_derived(self) -> bool:
        return self.layout in ("openai", "fairclip")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(t.shape) for name, t in self.tensors.items()}


def normalise(checkpoint: object, *, source: str) -> StateDict:
    """Unwrap a loaded checkpoint object into an open_clip-named :class:`StateDict`.

    Raises
    ------
    ModelError
        If no mapping of names to tensors can be found in ``checkpoint``.
    """
    layout = "open_clip"
    inner = checkpoint
    if isinstance(inner, Mapping):
        for key in CONTAINER_KEYS:
            if isinstance(inner.get(key), Mapping):
                layout = "fairclip" if key == "model_state_dict" else layout
                inner = inner[key]
                break
    if not isinstance(inner, Mapping) or not inner:
        raise ModelError(f"{source}: holds no state dict; expected a mapping of parameter names "
                         f"to tensors, or a dict with one under {' or '.join(CONTAINER_KEYS)}")
    tensors = {str(k): v for k, v in inner.items()}
    tensors = _strip_wrapper_prefixes(tensors)
    if any(key in tensors for key in OPENAI_METADATA_KEYS):
        layout = "openai" if layout == "open_clip" else layout
        tensors = {k: v for k, v in tensors.items() if k not in OPENAI_METADATA_KEYS}
    not_tensors = [(k, type(v).__name__) for k, v in tensors.items()
                   if not isinstance(v, torch.Tensor)]
    if not_tensors:
        name, kind = not_tensors[0]
        raise ModelError(f"{source}: entry {name!r} is of type {kind}, not a tensor; "
                         "expected a state dict of tensors")
    _check_finite(tensors, source)
    return StateDict(tensors, layout)


def _check_finite(tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse NaN or infinite weights (a diverged run, a damaged file): they would turn every
    score into NaN far from the cause."""
    for name, tensor in tensors.items():
        floating = tensor.is_floating_point() or tensor.is_complex()
        if floating and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelError(f"{source}: entry {name!r} holds {bad} NaN or infinite value(s) "
                             f"of {tensor.numel()}; expected finite weights")


def adapt_to(state: StateDict, expected: Mapping[str, tuple[int, ...]]) -> StateDict:
    """Rename and reshape ``state`` towards an architecture's ``expected`` names and shapes.

    Moves the text tower under ``text.`` for models with a separate text module, and reshapes
    ``logit_scale`` between a scalar and a one-element vector. Names that still differ are left
    for the caller to report.
    """
    tensors = dict(state.tensors)
    if "text.positional_embedding" in expected and "positional_embedding" in tensors:
        tensors = {(f"text.{k}" if k.split(".")[0] in _TEXT_TOWER_KEYS else k): v
                   for k, v in tensors.items()}
    for name in ("logit_scale", "logit_bias"):
        if name in tensors and name in expected and tensors[name].numel() == 1:
            tensors[name] = tensors[name].reshape(expected[name])
    return StateDict(tensors, state.layout)


def _strip_wrapper_prefixes(tensors: dict[str, object]) -> dict[str, object]:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) for key in tensors):
                tensors = {key[len(prefix):]: value for key, value in tensors.items()}
                changed = True
    return tensors
