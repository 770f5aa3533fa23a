"""Model spec strings: what a user types to name a model.

Accepted forms
--------------
``demo``
    fairvlm's built-in demo model (trained on the demo data at first use).
``ARCH:TAG``
    an open_clip architecture and pretrained tag, e.g. ``ViT-B-16:openai`` (downloaded by
    open_clip; ``python -c "import open_clip; print(open_clip.list_pretrained())"`` lists them).
``hf-hub:ORG/NAME``
    an open_clip model on the Hugging Face Hub (config and weights downloaded by open_clip).
a file path
    a checkpoint file: an open_clip or OpenAI-CLIP state dict, or a FairCLIP training
    checkpoint (``.safetensors``, ``.pt``, ``.pth``, ``.bin``, ``.ckpt``).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import open_clip

from fairvlm.errors import ModelError
from fairvlm.models.architectures import is_known, register_configs
from fairvlm.models.checkpoints import CHECKPOINT_SUFFIXES

HF_HUB_PREFIX = "hf-hub:"
DEMO_SPEC = "demo"
ACCEPTED_FORMS = (
    "demo; ARCH:TAG (an open_clip architecture and pretrained tag, e.g. ViT-B-16:openai); "
    "hf-hub:ORG/NAME; or the path of a checkpoint file "
    f"({', '.join(CHECKPOINT_SUFFIXES)})"
)

SpecKind = Literal["demo", "pretrained", "hf-hub", "file"]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    ``kind`` is ``"demo"``, ``"pretrained"`` (``arch`` and ``tag`` set), ``"hf-hub"``
    (``hub_id`` set) or ``"file"`` (``path`` set).
    """

    text: str
    kind: SpecKind
    arch: str | None = None
    tag: str | None = None
    hub_id: str | None = None
    path: Path | None = None


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string.

    Raises
    ------
    ModelError
        A missing file, an unknown architecture or tag, a malformed hub id, or a string of no
        accepted form (the message lists the accepted forms).
    """
    text = str(spec).strip()
    if not text:
        raise ModelError(f"empty model spec; expected {ACCEPTED_FORMS}")
    if text == DEMO_SPEC:
        return ModelSpec(text, "demo")
    if text.startswith(HF_HUB_PREFIX):
        return _parse_hub(text)
    path = Path(text).expanduser()
    if path.is_file():
        return ModelSpec(text, "file", path=path)
    if path.is_dir():
        raise ModelError(f"{text}: is a folder; expected a checkpoint file "
                         f"({', '.join(CHECKPOINT_SUFFIXES)})")
    if _looks_like_path(text):
        raise ModelError(f"{text}: file not found; expected an existing checkpoint file "
                         f"({', '.join(CHECKPOINT_SUFFIXES)})")
    if ":" in text:
        return _parse_pretrained(text)
    if is_known(text):
        tags = open_clip.list_pretrained_tags_by_model(text)
        raise ModelError(f"model spec {text!r}: an architecture needs a pretrained tag, "
                         f"ARCH:TAG; available tags for {text}: {', '.join(tags) or 'none'}")
    raise ModelError(f"unknown model spec {text!r}; expected {ACCEPTED_FORMS}")


def _parse_hub(text: str) -> ModelSpec:
    hub_id = text[len(HF_HUB_PREFIX):]
    parts = hub_id.split("/")
    if len(parts) != 2 or not all(parts):
        raise ModelError(f"model spec {text!r}: expected hf-hub:ORG/NAME, e.g. "
                         "hf-hub:laion/CLIP-ViT-B-16-laion2B-s34B-b88K")
    return ModelSpec(text, "hf-hub", hub_id=hub_id)


def _parse_pretrained(text: str) -> ModelSpec:
    arch, _, tag = text.partition(":")
    register_configs()
    if not is_known(arch):
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
        suggestion = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ModelError(f"model spec {text!r}: unknown open_clip architecture {arch!r}"
                         f"{suggestion}; expected {ACCEPTED_FORMS}")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        listing = ", ".join(tags) if tags else "none (it has no pretrained weights)"
        raise ModelError(f"model spec {text!r}: unknown pretrained tag {tag!r} for {arch}; "
                         f"available tags: {listing}")
    return ModelSpec(text, "pretrained", arch=arch, tag=tag)


def _looks_like_path(text: str) -> bool:
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (any(sep in text for sep in seps) or text.startswith(("~", "."))
            or Path(text).suffix.lower() in CHECKPOINT_SUFFIXES)
