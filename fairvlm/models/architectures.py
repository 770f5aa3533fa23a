"""Model architectures: fairvlm's configurations, and naming the architecture of a state dict.

An architecture is an open_clip model configuration name (``ViT-B-16``, ``RN50-quickgelu``,
``fairvlm-demo-rn``). fairvlm ships its own configurations as JSON files in
``fairvlm/models/configs/`` and registers them with open_clip on first use, so every open_clip
function (``create_model``, ``get_tokenizer``) accepts their names.

:func:`infer_architecture` names the architecture of a checkpoint from its tensors alone: it
builds each candidate configuration on the ``meta`` device (no memory, no initialisation cost)
and keeps those whose parameter names and shapes equal the checkpoint's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2

from fairvlm.errors import ModelError

CONFIG_DIR = Path(__file__).parent / "configs"
DEMO_ARCH = "fairvlm-demo-rn"
_QUICKGELU_SUFFIX = "-quickgelu"
# Where a user names a checkpoint's architecture, in the command line and in the app.
ARCH_CHOICE = "--arch (command line) or the Architecture field (app)"
_MAX_NAMES_IN_MESSAGE = 3

Shapes = Mapping[str, tuple[int, ...]]


@functools.cache
def register_configs() -> tuple[str, ...]:
    """Register fairvlm's JSON configurations with open_clip (once); return their names."""
    open_clip.add_model_config(CONFIG_DIR)
    return tuple(sorted(path.stem for path in CONFIG_DIR.glob("*.json")))


def known_architectures() -> tuple[str, ...]:
    """Names of every registered open_clip configuration, fairvlm's included, sorted."""
    register_configs()
    return tuple(sorted(open_clip.list_models()))


def is_known(arch: str) -> bool:
    """Whether ``arch`` names a registered open_clip configuration."""
    return arch in known_architectures()


def build_model(arch: str, *, quick_gelu: bool = False,
                preprocess: Mapping[str, object] | None = None) -> torch.nn.Module:
    """A randomly initialised ``arch`` model on the CPU, with no weights downloaded.

    ``arch`` is a registered configuration name or ``hf-hub:ORG/NAME``. ``preprocess``
    overrides the image preprocessing the model carries (``mean``, ``std``, ``interpolation``,
    ``resize_mode``: keys of open_clip's ``PreprocessCfg``; others are ignored).
    """
    register_configs()
    keys = {f.name for f in dataclasses.fields(PreprocessCfg)}
    overrides = {k: v for k, v in (preprocess or {}).items() if k in keys and k != "size"}
    with _quiet_open_clip():
        return open_clip.create_model(arch, load_weights=False, force_quick_gelu=quick_gelu,
                                      force_preprocess_cfg=overrides, device="cpu")


def inference_transforms(model: torch.nn.Module, arch: str) -> tuple[Callable, Callable]:
    """The model's evaluation image transform (no augmentation) and its tokenizer."""
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    with _quiet_open_clip():
        tokenizer = open_clip.get_tokenizer(arch)
    return preprocess, tokenizer


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Silence open_clip's root-logger warnings (e.g. "initialized randomly") while building."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names of ``arch``'s state dict, with their shapes."""
    return _expected_shapes(arch)


@functools.cache
def _expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    register_configs()
    with torch.device("meta"), _quiet_open_clip():
        model = open_clip.create_model(arch, device="meta", pretrained_text=False)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


@dataclass(frozen=True)
class Mismatch:
    """How a checkpoint's tensors differ from an architecture's.

    ``missing``: names the architecture needs and the checkpoint lacks; ``unexpected``: names
    the checkpoint has and the architecture does not; ``wrong_shape``: name -> (checkpoint
    shape, architecture shape).
    """

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    wrong_shape: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]]

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.wrong_shape)

    def describe(self) -> str:
        """One short line: counts and the first few names of each kind."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_first(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_first(self.unexpected)})")
        if self.wrong_shape:
            shown = [f"{name} {list(have)} vs {list(want)}"
                     for name, (have, want) in list(self.wrong_shape.items())[:2]]
            parts.append(f"{len(self.wrong_shape)} with the wrong shape ({'; '.join(shown)})")
        return ", ".join(parts) or "no differences"


def compare(checkpoint: Shapes, expected: Shapes) -> Mismatch:
    """Compare a checkpoint's tensor shapes with an architecture's."""
    missing = tuple(sorted(set(expected) - set(checkpoint)))
    unexpected = tuple(sorted(set(checkpoint) - set(expected)))
    wrong = {name: (tuple(checkpoint[name]), tuple(expected[name]))
             for name in sorted(set(expected) & set(checkpoint))
             if tuple(checkpoint[name]) != tuple(expected[name])}
    return Mismatch(missing, unexpected, wrong)


def infer_architecture(shapes: Shapes, *, source: str, prefer_quickgelu: bool = False) -> str:
    """Name the registered architecture whose tensors match ``shapes`` exactly.

    Candidates are the configurations built from open_clip's own modules (configurations that
    need timm or Hugging Face towers are skipped). Weights cannot tell QuickGELU from GELU, so a
    name and its ``-quickgelu`` twin both match; ``prefer_quickgelu`` picks between them (the
    OpenAI CLIP package, which FairCLIP fine-tunes, uses QuickGELU).

    Raises
    ------
    ModelError
        If no candidate matches: names the closest candidate and how it differs, and asks for
        the architecture (:data:`ARCH_CHOICE`).
    """
    candidates = _candidates(shapes)
    matches = []
    closest: tuple[int, str, Mismatch] | None = None
    for arch in candidates:
        mismatch = compare(shapes, expected_shapes(arch))
        if mismatch.count == 0:
            matches.append(arch)
        elif closest is None or mismatch.count < closest[0]:
            closest = (mismatch.count, arch, mismatch)
    if matches:
        return _pick(matches, prefer_quickgelu=prefer_quickgelu)
    hint = "" if closest is None else f"; closest is {closest[1]}: {closest[2].describe()}"
    raise ModelError(
        f"{source}: cannot tell the architecture from its {len(shapes)} tensors{hint}; "
        f"choose its open_clip architecture (e.g. ViT-B-16) with {ARCH_CHOICE}"
    )


def _candidates(shapes: Shapes) -> list[str]:
    """Registered plain open_clip configurations, pre-filtered by embedding and text sizes."""
    register_configs()
    projection = shapes.get("text_projection") or shapes.get("text.text_projection")
    positions = shapes.get("positional_embedding") or shapes.get("text.positional_embedding")
    names = []
    for name in open_clip.list_models():
        config = open_clip.get_model_config(name)
        if not _is_plain(config):
            continue
        if projection is not None and len(projection) == 2 and config["embed_dim"] != projection[1]:
            continue
        text = {**asdict(open_clip.CLIPTextCfg()), **config["text_cfg"]}
        if positions is not None and (text["context_length"], text["width"]) != tuple(positions):
            continue
        names.append(name)
    return names


def _is_plain(config: Mapping | None) -> bool:
    """Whether a configuration builds from open_clip's own modules alone."""
    if config is None or "multimodal_cfg" in config:
        return False
    vision, text = config["vision_cfg"], config["text_cfg"]
    return "timm_model_name" not in vision and "hf_model_name" not in text


def _pick(matches: list[str], *, prefer_quickgelu: bool) -> str:
    quick = [m for m in matches if m.endswith(_QUICKGELU_SUFFIX)]
    plain = [m for m in matches if not m.endswith(_QUICKGELU_SUFFIX)]
    preferred = (quick or plain) if prefer_quickgelu else (plain or quick)
    return preferred[0]


def _first(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_MESSAGE])
    return shown + (", ..." if len(names) > _MAX_NAMES_IN_MESSAGE else "")
