"""Embeddings: equal to a one-pair-at-a-time reference; cached by content; never stale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fairvlm.data.table import PairTable
from fairvlm.errors import DataError
from fairvlm.models import LoadedModel
from fairvlm.scoring import (
    Embeddings,
    compute_embeddings,
    embedding_cache_key,
    embedding_cache_path,
    pair_scores,
    zero_shot_probabilities,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FAIRVLM_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


class ForwardCounter:
    """Counts calls of the model's image and text towers."""

    def __init__(self, loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        for name in ("encode_image", "encode_text"):
            original = getattr(loaded.model, name)
            monkeypatch.setattr(loaded.model, name, self._counted(original))

    def _counted(self, function):
        def wrapper(*args, **kwargs):
            self.calls += 1
            return function(*args, **kwargs)
        return wrapper


def _reference(loaded: LoadedModel, table: PairTable,
               rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One pair at a time, images decoded with numpy + PIL directly."""
    images, texts = [], []
    frame = table.frame.iloc[rows]
    with torch.no_grad():
        for path, text in zip(frame["image"], frame["text"], strict=True):
            pixels = np.rint(np.load(path) * 255).astype(np.uint8)
            tensor = loaded.preprocess(Image.fromarray(pixels).convert("RGB"))[None]
            images.append(torch.nn.functional.normalize(loaded.model.encode_image(tensor))[0])
            tokens = loaded.tokenizer([text])
            texts.append(torch.nn.functional.normalize(loaded.model.encode_text(tokens))[0])
    return torch.stack(images).numpy(), torch.stack(texts).numpy()


def test_matches_reference(home: Path, loaded: LoadedModel, table: PairTable) -> None:
    embeddings = compute_embeddings(loaded, table, batch_size=7, cache=False)
    rows = [0, 6, 7, 13, 29]  # first and last rows, and both sides of batch boundaries
    image, text = _reference(loaded, table, rows)
    np.testing.assert_allclose(embeddings.image[rows], image, atol=2e-5)
    np.testing.assert_allclose(embeddings.text[rows], text, atol=2e-5)
    assert embeddings.image.dtype == np.float32 and embeddings.image.shape == (len(table), 64)
    np.testing.assert_allclose(np.linalg.norm(embeddings.image, axis=1), 1.0, atol=1e-5)
    assert embeddings.logit_scale == pytest.approx(float(loaded.model.logit_scale.detach().exp()))
    assert list(embeddings.ids) == list(table.ids)
    assert not (home / "cache").exists()


def test_second_call_reads_the_cache(home: Path, loaded: LoadedModel, table: PairTable,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    counter = ForwardCounter(loaded, monkeypatch)
    first = compute_embeddings(loaded, table, batch_size=16)
    assert counter.calls == 2 * 2  # two batches, two towers
    assert embedding_cache_path(loaded, table).is_file()
    second = compute_embeddings(loaded, table, batch_size=16)
    assert counter.calls == 4
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.text, second.text)
    assert second.logit_scale == first.logit_scale and list(second.ids) == list(first.ids)
    # Prompts are not part of the key: new prompts change zero-shot, not the embeddings.
    a = zero_shot_probabilities(loaded, second.image, {0: ["healthy rim"], 1: ["C/D 0.8"]})
    b = zero_shot_probabilities(loaded, second.image, {0: ["no glaucoma"], 1: ["glaucoma"]})
    assert not np.allclose(a, b)
    before = counter.calls
    compute_embeddings(loaded, table)
    assert counter.calls == before


def test_damaged_cache_file_is_recomputed(home: Path, loaded: LoadedModel,
                                          table: PairTable) -> None:
    fresh = compute_embeddings(loaded, table)
    path = embedding_cache_path(loaded, table)
    path.write_bytes(b"PK\x03\x04 truncated")
    again = compute_embeddings(loaded, table)
    np.testing.assert_allclose(again.image, fresh.image, atol=1e-6)
    with np.load(path) as stored:
        assert stored["image"].shape == fresh.image.shape
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_key_changes_with_every_input(loaded: LoadedModel, table: PairTable,
                                      tmp_path: Path) -> None:
    base = embedding_cache_key(loaded, table)
    assert base == embedding_cache_key(loaded, PairTable(table.frame.copy(), table.attributes,
                                                         name="same content"))
    edited = table.frame.copy()
    edited.loc[0, "text"] = "a different note"
    assert embedding_cache_key(loaded, PairTable(edited, table.attributes)) != base
    image = np.load(table.frame.loc[1, "image"])
    image[0, 0] = 1.0 - image[0, 0]
    moved = table.frame.copy()
    moved.loc[1, "image"] = str(tmp_path / "edited.npy")
    np.save(moved.loc[1, "image"], image)
    assert embedding_cache_key(loaded, PairTable(moved, table.attributes)) != base
    assert embedding_cache_key(dataclasses.replace(loaded, fingerprint="0" * 32), table) != base
    assert embedding_cache_key(dataclasses.replace(loaded, context_length=16), table) != base


def test_key_changes_with_preprocessing(loaded: LoadedModel, table: PairTable,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base = embedding_cache_key(loaded, table)
    config = dict(loaded.model.visual.preprocess_cfg, interpolation="bilinear")
    monkeypatch.setattr(loaded.model.visual, "preprocess_cfg", config)
    assert embedding_cache_key(loaded, table) != base


def test_embeddings_of_another_table_are_refused(loaded: LoadedModel, table: PairTable) -> None:
    other = Embeddings(image=np.zeros((3, 64), np.float32), text=np.zeros((3, 64), np.float32),
                       logit_scale=10.0, ids=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match="computed for another table"):
        pair_scores(other, table, split="test")
