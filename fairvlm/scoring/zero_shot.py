"""Zero-shot glaucoma probabilities from class prompts.

Each class k (0 = no glaucoma, 1 = glaucoma) has a prompt ensemble ``t_k1 ... t_km``. Its class
embedding is the renormalised mean of the prompts' unit text embeddings,

    c_k = m_k / ||m_k||,   m_k = (1/m) sum_j g(t_kj) / ||g(t_kj)||,

and for an image with unit embedding ``u``

    p(glaucoma | u) = softmax_k(s u . c_k)[1] = 1 / (1 + exp(-s u . (c_1 - c_0))),

with the model's logit scale ``s`` (default; calibrated like the training objective) or
``s = 1`` (``use_logit_scale=False``: FairCLIP's raw-cosine softmax, whose probabilities stay
near 0.5; kept for parity with published numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.special import expit

from fairvlm.errors import ConfigError
from fairvlm.models.loading import LoadedModel

CLASS_NAMES: dict[int, str] = {0: "no glaucoma", 1: "glaucoma"}


def check_prompts(prompts: Mapping[int, Sequence[str]]) -> dict[int, list[str]]:
    """Prompts per class with blanks stripped; both classes must have at least one.

    Raises
    ------
    ConfigError
        If a class is missing or has only empty prompts, or a key is not 0 or 1.
    """
    by_label: dict[int, Sequence[str] | str] = {}
    for key, value in prompts.items():
        label = _as_label(key)
        if label not in CLASS_NAMES:
            raise ConfigError(f"prompts: {key!r} is not a class; expected 0 (no glaucoma) "
                              "and 1 (glaucoma)")
        by_label[label] = value
    checked = {}
    for label, name in CLASS_NAMES.items():
        given = by_label.get(label, ())
        if isinstance(given, str):
            given = [given]
        texts = [str(text).strip() for text in given if str(text).strip()]
        if not texts:
            raise ConfigError(f"prompts for class {label} ({name}) are empty; expected at least "
                              "one non-empty prompt per class")
        checked[label] = texts
    return checked


def _as_label(key: object) -> int | None:
    """A class key as an int (``"1"`` from JSON counts as 1), or ``None``."""
    try:
        return int(str(key).strip())
    except ValueError:
        return None


def class_text_embeddings(loaded: LoadedModel, prompts: Mapping[int, Sequence[str]]) -> np.ndarray:
    """``[2, D]`` float32: row k is the class embedding ``c_k`` of the module docstring."""
    checked = check_prompts(prompts)
    rows = []
    with torch.inference_mode():
        for label in sorted(checked):
            tokens = loaded.tokenizer(checked[label]).to(loaded.device)
            unit = loaded.model.encode_text(tokens, normalize=True).float()
            mean = unit.mean(dim=0)
            rows.append((mean / mean.norm()).cpu().numpy())
    return np.stack(rows).astype(np.float32)


def zero_shot_probabilities(loaded: LoadedModel, image_embeddings: np.ndarray,
                            prompts: Mapping[int, Sequence[str]], *,
                            use_logit_scale: bool = True) -> np.ndarray:
    """``p(glaucoma)`` for every row of ``image_embeddings`` (``[N, D]``, unit rows).

    See the module docstring for the formula. Returns float64 ``[N]``.
    """
    classes = class_text_embeddings(loaded, prompts)
    images = np.asarray(image_embeddings, dtype=np.float64)
    if images.ndim != 2 or images.shape[1] != classes.shape[1]:
        raise ConfigError(f"image embeddings of shape {images.shape}: expected [N, "
                          f"{classes.shape[1]}] from the same model as the prompts")
    scale = loaded.logit_scale if use_logit_scale else 1.0
    direction = classes[1].astype(np.float64) - classes[0].astype(np.float64)
    return expit(scale * (images @ direction))
