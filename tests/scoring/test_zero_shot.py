"""Zero-shot probabilities against a hand computation; bad prompts are refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy.special import softmax

from fairvlm.errors import ConfigError
from fairvlm.models import LoadedModel
from fairvlm.scoring import check_prompts, class_text_embeddings, zero_shot_probabilities

PROMPTS = {
    0: ["Disc: C/D 0.30, healthy rim.", "Impression: no glaucoma.", "rim intact"],
    1: ["Disc: C/D 0.80, thin rim.", "Impression: primary open-angle glaucoma."],
}


def _unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _hand_class_embedding(loaded: LoadedModel, texts: list[str]) -> np.ndarray:
    """Each prompt alone through the text tower, unit-normalised, averaged, renormalised."""
    units = []
    with torch.no_grad():
        for text in texts:
            feature = loaded.model.encode_text(loaded.tokenizer([text]))[0].numpy()
            units.append(feature / np.linalg.norm(feature))
    mean = np.mean(units, axis=0)
    return mean / np.linalg.norm(mean)


@pytest.mark.parametrize("use_logit_scale", [True, False])
def test_matches_hand_computation(loaded: LoadedModel, use_logit_scale: bool) -> None:
    images = _unit_rows(9, 64, seed=3)
    classes = np.stack([_hand_class_embedding(loaded, PROMPTS[k]) for k in (0, 1)])
    np.testing.assert_allclose(class_text_embeddings(loaded, PROMPTS), classes, atol=1e-5)
    scale = float(loaded.model.logit_scale.detach().exp()) if use_logit_scale else 1.0
    expected = softmax(scale * images.astype(np.float64) @ classes.T, axis=1)[:, 1]
    got = zero_shot_probabilities(loaded, images, PROMPTS, use_logit_scale=use_logit_scale)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert got.shape == (9,) and np.all((got > 0) & (got < 1))


def test_raw_cosine_stays_near_one_half(loaded: LoadedModel) -> None:
    images = _unit_rows(50, 64, seed=4)
    raw = zero_shot_probabilities(loaded, images, PROMPTS, use_logit_scale=False)
    scaled = zero_shot_probabilities(loaded, images, PROMPTS)
    assert np.abs(raw - 0.5).max() < 0.5 * np.tanh(1.0)  # |logit difference| <= 2
    assert np.abs(scaled - 0.5).max() > np.abs(raw - 0.5).max()


def test_ensemble_is_averaged_in_embedding_space(loaded: LoadedModel) -> None:
    images = _unit_rows(20, 64, seed=5)
    ensemble = zero_shot_probabilities(loaded, images, PROMPTS)
    per_prompt = np.mean([zero_shot_probabilities(loaded, images, {0: [a], 1: [b]})
                          for a in PROMPTS[0] for b in PROMPTS[1]], axis=0)
    assert not np.allclose(ensemble, per_prompt, atol=1e-4)


@pytest.mark.parametrize("prompts, expected", [
    ({0: [], 1: ["glaucoma"]}, "class 0 (no glaucoma) are empty"),
    ({0: ["no glaucoma"]}, "class 1 (glaucoma) are empty"),
    ({0: ["  ", ""], 1: ["glaucoma"]}, "class 0 (no glaucoma) are empty"),
    ({}, "class 0 (no glaucoma) are empty"),
    ({0: ["a"], 1: ["b"], 2: ["c"]}, "2 is not a class"),
    ({"healthy": ["a"], 1: ["b"]}, "'healthy' is not a class"),
])
def test_bad_prompts(loaded: LoadedModel, prompts: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        zero_shot_probabilities(loaded, _unit_rows(2, 64, 0), prompts)


def test_prompt_forms_accepted() -> None:
    assert check_prompts({"1": "glaucoma", "0": [" no glaucoma ", ""]}) == {
        0: ["no glaucoma"], 1: ["glaucoma"]}


def test_embedding_width_must_match(loaded: LoadedModel) -> None:
    with pytest.raises(ConfigError, match=r"expected \[N, 64\]"):
        zero_shot_probabilities(loaded, _unit_rows(3, 32, 0), PROMPTS)
