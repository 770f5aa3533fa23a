"""Pair scores of large splits against a sample of negatives: exact below the cap, unbiased
above it (checked over every possible sample of a small split), close to exact at scale."""

from __future__ import annotations

import tracemalloc
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from fairvlm.data.table import PairTable
from fairvlm.errors import ConfigError
from fairvlm.scoring import Embeddings, pair_scores
from fairvlm.scoring import pairs as pairs_module


def _table(n: int) -> PairTable:
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "split": ["test"] * n,
                          "image": [f"/nowhere/{i}.png" for i in range(n)],
                          "text": [f"note {i}" for i in range(n)],
                          "label": [i % 2 for i in range(n)]})
    return PairTable(frame, {})


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _embeddings(table: PairTable, *, d: int = 16, match: float = 0.7, seed: int = 0,
                scale: float = 14.3) -> Embeddings:
    """Matched notes somewhat closer than others, so ranks spread over the split."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(len(table), d))
    v = match * u + rng.normal(size=(len(table), d))
    return Embeddings(image=_unit(u), text=_unit(v), logit_scale=scale,
                      ids=table.ids.astype(str))


def test_exact_up_to_the_cap_and_sampled_above_it() -> None:
    table = _table(41)
    embeddings = _embeddings(table)
    exact = pair_scores(embeddings, table, split="test")
    at_cap = pair_scores(embeddings, table, split="test", max_negatives=40)
    pd.testing.assert_frame_equal(at_cap, exact)
    assert not exact["sampled"].any() and (exact["negatives"] == 40).all()
    sampled = pair_scores(embeddings, table, split="test", max_negatives=39)
    assert sampled["sampled"].all()
    # One shared sample J of 39 pairs: its members have 38 negatives, the other two pairs 39.
    assert sorted(sampled["negatives"].value_counts().items()) == [(38, 39), (39, 2)]
    assert pairs_module.negative_sample(41, 40, seed=0) is None
    np.testing.assert_array_equal(pairs_module.negative_sample(41, 39, seed=0),
                                  np.sort(np.random.default_rng(0).choice(41, 39, replace=False)))


def test_estimates_are_unbiased_over_every_sample() -> None:
    """Split of n = 7, samples of K = 3 (weights (n-1)/|N_i| = 2 or 3, so ranks are not
    rounded). The notes are the images reflected by a Householder matrix R, so S = U R U^T is
    symmetric and the loss is one cross-entropy: exp(loss_i + s S_ii) estimates
    Z_i = sum_j exp(s S_ij). Averaged over all C(7, 3) samples, it and the rank are exact."""
    n, k, s = 7, 3, 5.0
    rng = np.random.default_rng(3)
    images = _unit(rng.normal(size=(n, 4)))
    h = _unit(rng.normal(size=(1, 4)))[0].astype(np.float64)
    notes = (images @ (np.eye(4) - 2 * np.outer(h, h))).astype(np.float32)
    S = images.astype(np.float64) @ notes.astype(np.float64).T
    np.testing.assert_allclose(S, S.T, atol=1e-6)
    own = np.diag(S)
    exact_z = np.exp(s * S).sum(axis=1)
    exact_rank = 1 + (own[:, None] < S).sum(axis=1)
    exact_margin = own - np.where(np.eye(n, dtype=bool), -np.inf, S).max(axis=1)
    assert len(set(exact_rank)) >= 3  # the ranks spread out

    z_sum, rank_sum = np.zeros(n), np.zeros(n)
    samples = list(combinations(range(n), k))
    for sample in samples:
        scores = pairs_module._quantities(images, notes, s, np.array(sample))
        z_sum += np.exp(scores["loss"] + s * scores["similarity"])
        rank_sum += scores["rank"]
        assert (scores["margin"] >= exact_margin - 1e-6).all()  # the best of fewer negatives
    np.testing.assert_allclose(z_sum / len(samples), exact_z, rtol=1e-5)
    np.testing.assert_allclose(rank_sum / len(samples), exact_rank, rtol=1e-12)


def test_sampled_scores_track_the_exact_ones_at_scale() -> None:
    table = _table(3000)
    embeddings = _embeddings(table, d=32, match=0.3)  # median exact rank about 150
    exact = pair_scores(embeddings, table, split="test")
    sampled = pair_scores(embeddings, table, split="test", max_negatives=500, seed=1)
    np.testing.assert_array_equal(sampled["similarity"], exact["similarity"])
    assert spearmanr(sampled["rank"], exact["rank"]).statistic > 0.98
    assert np.corrcoef(sampled["loss"], exact["loss"])[0, 1] > 0.99
    # The log of an unbiased estimate is low on average (Jensen): here by about 0.04.
    assert -0.06 < sampled["loss"].mean() - exact["loss"].mean() < 0
    assert sampled["rank"].between(1, 3000).all()
    again = pair_scores(embeddings, table, split="test", max_negatives=500, seed=1)
    pd.testing.assert_frame_equal(again, sampled)  # seeded
    other = pair_scores(embeddings, table, split="test", max_negatives=500, seed=2)
    assert not other["loss"].equals(sampled["loss"])


def test_sampled_memory_is_linear_in_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 20_000
    monkeypatch.setattr(pairs_module, "BLOCK_ENTRIES", 2**16)
    table = _table(n)
    embeddings = _embeddings(table, d=8)
    tracemalloc.start()
    pair_scores(embeddings, table, split="test", max_negatives=2000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < n * 2000 * 4 / 20  # a twentieth of the n x 2000 float32 sampled matrix


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "10"])
def test_max_negatives_must_be_a_positive_integer(value: object) -> None:
    table = _table(5)
    with pytest.raises(ConfigError) as caught:
        pair_scores(_embeddings(table), table, split="test", max_negatives=value)
    assert str(caught.value) == (f"pair scores field max_negatives: {value!r}; expected an "
                                 "integer >= 1")
