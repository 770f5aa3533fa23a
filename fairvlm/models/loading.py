"""Load a model from a spec string, with its preprocessing, tokenizer and weights fingerprint.

Every spec (see :mod:`fairvlm.models.specs`) ends in one checkpoint file, read safely
(:mod:`fairvlm.models.checkpoints`), renamed to open_clip's layout (:mod:`fairvlm.models.keymap`)
and checked against the architecture before any weight is copied, so a checkpoint that does
not fit is reported in one line (missing, unexpected and wrongly shaped tensors).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import open_clip
import torch

from fairvlm.errors import ModelError
from fairvlm.models import architectures, demo_model, keymap
from fairvlm.models.checkpoints import ARCH_METADATA_KEY, PROMPTS_METADATA_KEY, read_checkpoint
from fairvlm.models.prompts import DEMO_PROMPTS, FAIRVLMED_PROMPTS
from fairvlm.models.specs import HF_HUB_PREFIX, ModelSpec, parse_spec

_PREPROCESS_DESCRIPTION_KEYS = ("size", "mode", "mean", "std", "interpolation", "resize_mode",
                                "fill_color")


@dataclass
class LoadedModel:
    """A model ready for inference, and everything needed to feed it.

    Attributes
    ----------
    model
        The open_clip model, in eval mode, on ``device``. Treat it as read-only: training loads
        its own copy.
    preprocess
        open_clip's evaluation image transform (PIL image -> tensor; no augmentation).
    tokenizer
        open_clip tokenizer: list of strings -> ``[n, context_length]`` token ids.
    spec, arch, device
        The spec string loaded, the open_clip architecture name, and ``"cpu"``/``"cuda"``.
    fingerprint
        32 hex characters: a hash of the module structure (architecture, activations) and of
        every weight. Equal weights loaded from different file formats give equal fingerprints.
    context_length
        Tokens per text; longer texts are truncated by the tokenizer.
    default_prompts
        Class -> prompt list (1 = glaucoma, 0 = no glaucoma) to seed zero-shot scoring.
    """

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    spec: str
    arch: str
    device: str
    fingerprint: str
    context_length: int
    default_prompts: dict[int, list[str]] = field(default_factory=dict)

    @property
    def logit_scale(self) -> float:
        """The learned temperature ``s = exp(model.logit_scale)``."""
        return float(self.model.logit_scale.detach().exp().item())

    @property
    def preprocess_description(self) -> str:
        """The image preprocessing as canonical JSON (part of embedding cache keys)."""
        config = self.model.visual.preprocess_cfg
        return json.dumps({key: config.get(key) for key in _PREPROCESS_DESCRIPTION_KEYS},
                          sort_keys=True)


def load_model(spec: str, *, device: str | None = None, arch: str | None = None) -> LoadedModel:
    """Load a model from a spec string.

    Parameters
    ----------
    spec
        ``demo``, ``ARCH:TAG``, ``hf-hub:ORG/NAME`` or a checkpoint file path.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available, else CPU.
    arch
        The open_clip architecture of a checkpoint file (other specs name their own). By
        default it is read from the file's metadata (files written by fairvlm), else inferred
        from the tensor names and shapes.

    Raises
    ------
    ModelError
        Unknown spec, missing file, unsafe or corrupt file, failed download, or a checkpoint
        that does not fit the architecture.
    """
    parsed = parse_spec(spec)
    target = resolve_device(device)
    if arch is not None and not architectures.is_known(arch):
        raise ModelError(f"--arch {arch!r}: not an open_clip architecture; expected a name from "
                         "open_clip.list_models(), e.g. ViT-B-16 or RN50")
    path, arch_name, build_options = _resolve(parsed, arch)
    checkpoint, metadata = read_checkpoint(path)
    state = keymap.normalise(checkpoint, source=str(path))
    if arch_name is None:
        arch_name = _metadata_arch(metadata) or architectures.infer_architecture(
            state.shapes(), source=str(path), prefer_quickgelu=state.openai_derived)
    model = _with_weights(_build(parsed.text, arch_name, build_options), state,
                          source=str(path), arch=arch_name)
    fingerprint = weights_fingerprint(model)
    model = model.to(target).eval()
    preprocess, tokenizer = architectures.inference_transforms(model, arch_name)
    prompts = (_metadata_prompts(metadata, source=str(path))
               or (DEMO_PROMPTS if parsed.kind == "demo" else FAIRVLMED_PROMPTS))
    return LoadedModel(
        model=model, preprocess=preprocess, tokenizer=tokenizer, spec=parsed.text,
        arch=arch_name, device=target, fingerprint=fingerprint,
        context_length=int(tokenizer.context_length),
        default_prompts={label: list(texts) for label, texts in prompts.items()},
    )


def resolve_device(device: str | None) -> str:
    """``device`` checked against the machine, or CUDA when available, else CPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise ModelError(f"--device {device!r}: expected cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"--device {device!r}: CUDA is not available on this machine; "
                             "expected cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelError(f"--device {device!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    elif parsed.type != "cpu":
        raise ModelError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    return str(parsed)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the module structure and every state-dict tensor (32 hex characters)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(model).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _resolve(parsed: ModelSpec, arch: str | None) -> tuple[Path, str | None, dict]:
    """The checkpoint file of a spec, its architecture if known, and build options."""
    if parsed.kind == "demo":
        prepared = demo_model.demo_model_info() is not None
        path = demo_model.demo_model_path() if prepared else demo_model.ensure_demo_model()
        return path, architectures.DEMO_ARCH, {}
    if parsed.kind == "pretrained":
        config = open_clip.get_pretrained_cfg(parsed.arch, parsed.tag)
        path = _download(parsed.text, lambda: open_clip.pretrained.download_pretrained(config))
        return path, parsed.arch, {"quick_gelu": bool(config.get("quick_gelu", False)),
                                   "preprocess": config}
    if parsed.kind == "hf-hub":
        path = _download(parsed.text,
                         lambda: open_clip.pretrained.download_pretrained_from_hf(parsed.hub_id))
        return path, f"{HF_HUB_PREFIX}{parsed.hub_id}", {}
    return parsed.path, arch, {}


def _build(spec: str, arch: str, options: dict) -> torch.nn.Module:
    try:
        return architectures.build_model(arch, **options)
    except (RuntimeError, OSError, ValueError, ImportError) as error:
        reason = " ".join(str(error).split())[:200]
        raise ModelError(f"{spec}: cannot build architecture {arch} ({reason})") from None


def _metadata_arch(metadata: dict[str, str]) -> str | None:
    """The architecture a fairvlm-written file names, if this installation can build it."""
    arch = metadata.get(ARCH_METADATA_KEY)
    usable = arch and (arch.startswith(HF_HUB_PREFIX) or architectures.is_known(arch))
    return arch if usable else None


def _metadata_prompts(metadata: dict[str, str], *, source: str) -> dict[int, list[str]] | None:
    """The class prompts a fairvlm-written file records (a fine-tune's), if any.

    Raises
    ------
    ModelError
        If the recorded prompts are not ``{"0": [text, ...], "1": [text, ...]}``.
    """
    raw = metadata.get(PROMPTS_METADATA_KEY)
    if raw is None:
        return None
    try:
        recorded = json.loads(raw)
    except json.JSONDecodeError:
        recorded = None
    valid = (isinstance(recorded, dict) and sorted(recorded) == ["0", "1"]
             and all(isinstance(texts, list) and texts
                     and all(isinstance(text, str) and text.strip() for text in texts)
                     for texts in recorded.values()))
    if not valid:
        raise ModelError(f"{source}: metadata {PROMPTS_METADATA_KEY}: unreadable; expected JSON "
                         'class prompts {"0": [text, ...], "1": [text, ...]} as fairvlm writes')
    return {int(label): list(texts) for label, texts in recorded.items()}


def _download(spec: str, fetch: Callable[[], str]) -> Path:
    try:
        target = fetch()
    except Exception as error:  # network, hub and file errors all mean "could not fetch"
        reason = " ".join(str(error).split())[:200]
        raise ModelError(f"{spec}: could not download the weights ({reason}); check the network "
                         "connection, or download the checkpoint and pass its file path") from None
    if not target:
        raise ModelError(f"{spec}: open_clip knows no download location for these weights")
    return Path(target)


def _with_weights(model: torch.nn.Module, state: keymap.StateDict, *, source: str,
                  arch: str) -> torch.nn.Module:
    """Copy ``state`` into ``model`` after checking every name and shape."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    adapted = keymap.adapt_to(state, expected)
    mismatch = architectures.compare(adapted.shapes(), expected)
    if mismatch.count:
        raise ModelError(f"{source}: does not fit architecture {arch}: {mismatch.describe()}",
                         hint=f"choose the right open_clip architecture with "
                              f"{architectures.ARCH_CHOICE}")
    model.load_state_dict(adapted.tensors, strict=True)
    return model
