"""Per-pair similarity, loss, rank and margin against a naive full-matrix computation."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest
import torch

from fairvlm.data.table import PairTable
from fairvlm.errors import DataError
from fairvlm.scoring import SCORE_COLUMNS, Embeddings, pair_scores
from fairvlm.scoring import pairs as pairs_module


def _table(splits: list[str]) -> PairTable:
    n = len(splits)
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "split": splits,
                          "image": [f"/nowhere/{i}.png" for i in range(n)],
                          "text": [f"note {i}" for i in range(n)],
                          "label": [i % 2 for i in range(n)]})
    return PairTable(frame, {})


def _embeddings(table: PairTable, d: int = 16, scale: float = 14.3, seed: int = 0,
                match: float = 1.5) -> Embeddings:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(len(table), d))
    v = match * u + rng.normal(size=(len(table), d))  # matched notes tend to score higher
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return Embeddings(image=unit(u), text=unit(v), logit_scale=scale, ids=table.ids.astype(str))


def _naive(U: np.ndarray, V: np.ndarray, s: float) -> dict[str, np.ndarray]:
    """Full n x n matrices; the loss through torch's cross-entropy."""
    S = U.astype(np.float64) @ V.astype(np.float64).T
    logits = torch.from_numpy(s * S)
    target = torch.arange(len(U))
    cross_entropy = torch.nn.functional.cross_entropy
    loss = 0.5 * (cross_entropy(logits, target, reduction="none")
                  + cross_entropy(logits.T, target, reduction="none"))
    own = np.diag(S)
    wrong = S.copy()
    np.fill_diagonal(wrong, -np.inf)
    order = np.argsort(-S, axis=1, kind="stable")
    rank = np.array([int(np.flatnonzero(order[i] == i)[0]) + 1 for i in range(len(U))])
    return {"similarity": own, "loss": loss.numpy(), "rank": rank,
            "margin": own - wrong.max(axis=1) if len(U) > 1 else np.full(len(U), np.nan)}


@pytest.mark.parametrize(("block_entries", "scale"),
                         [(2**22, 14.3), (7 * 24, 14.3), (5 * 24, 100.0)])
def test_matches_naive_computation(block_entries: int, scale: float,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Several row blocks of 7 or 5 of the 24 rows (a streaming column log-sum-exp) and a large
    logit scale included."""
    monkeypatch.setattr(pairs_module, "BLOCK_ENTRIES", block_entries)
    splits = ["train", "test", "test", "val"] * 12
    table = _table(splits)
    embeddings = _embeddings(table, scale=scale)
    scores = pair_scores(embeddings, table, split="test")
    rows = table.split_indices("test")
    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert list(scores["id"]) == list(table.ids[rows])
    reference = _naive(embeddings.image[rows], embeddings.text[rows], embeddings.logit_scale)
    np.testing.assert_allclose(scores["similarity"], reference["similarity"], atol=1e-6)
    np.testing.assert_allclose(scores["loss"], reference["loss"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(scores["rank"], reference["rank"])
    np.testing.assert_allclose(scores["margin"], reference["margin"], atol=1e-6)
    assert (scores["negatives"] == 23).all() and not scores["sampled"].any()
    assert (scores["rank"] == 1).mean() > 0.3  # the data make matched pairs likely best
    np.testing.assert_array_equal(scores["margin"] > 0, scores["rank"] == 1)


def test_mean_loss_is_the_clip_loss() -> None:
    """The mean of the per-pair losses is open_clip's CLIP loss of the split as one batch."""
    import open_clip

    table = _table(["test"] * 20)
    embeddings = _embeddings(table, seed=2)
    scores = pair_scores(embeddings, table, split="test")
    clip_loss = open_clip.ClipLoss()(torch.from_numpy(embeddings.image),
                                     torch.from_numpy(embeddings.text),
                                     torch.tensor(embeddings.logit_scale))
    assert scores["loss"].mean() == pytest.approx(float(clip_loss), rel=1e-5)


def test_ties_count_in_the_pairs_favour() -> None:
    table = _table(["test"] * 3)
    same = np.tile(np.eye(4, dtype=np.float32)[:1], (3, 1))  # every similarity equals 1
    embeddings = Embeddings(image=same, text=same, logit_scale=10.0, ids=table.ids.astype(str))
    scores = pair_scores(embeddings, table, split="test")
    assert list(scores["rank"]) == [1, 1, 1]
    np.testing.assert_allclose(scores["margin"], 0.0)
    np.testing.assert_allclose(scores["loss"], np.log(3), rtol=1e-6)


def test_single_pair_split() -> None:
    table = _table(["train", "test", "train"])
    scores = pair_scores(_embeddings(table), table, split="test")
    assert scores["rank"].tolist() == [1] and scores["loss"].tolist() == [0.0]
    assert np.isnan(scores["margin"].iloc[0])


def test_empty_split_is_refused() -> None:
    table = _table(["train", "test"])
    with pytest.raises(DataError, match="split 'val' has no pairs"):
        pair_scores(_embeddings(table), table, split="val")
    with pytest.raises(DataError, match="expected one of train, val, test"):
        pair_scores(_embeddings(table), table, split="testing")


def test_memory_stays_below_the_full_matrix(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 3000
    monkeypatch.setattr(pairs_module, "BLOCK_ENTRIES", 256 * n)
    table = _table(["test"] * n)
    embeddings = _embeddings(table, d=32)
    tracemalloc.start()
    pair_scores(embeddings, table, split="test")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_matrix = n * n * 4
    assert peak < full_matrix / 3
