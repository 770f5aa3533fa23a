"""Linear probe sanity: learns real signal, not noise; uses text only when asked; refuses
impossible splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from fairvlm.data.table import PairTable
from fairvlm.errors import ConfigError, DataError
from fairvlm.scoring import C_GRID, Embeddings, linear_probe

N, D = 400, 12


def _table(labels: np.ndarray, splits: np.ndarray | None = None) -> PairTable:
    n = len(labels)
    if splits is None:
        splits = np.array(["train", "train", "train", "val", "test"] * (n // 5))
    frame = pd.DataFrame({"id": [f"p{i}" for i in range(n)], "split": splits,
                          "image": [f"/nowhere/{i}.png" for i in range(n)],
                          "text": [f"note {i}" for i in range(n)], "label": labels})
    return PairTable(frame, {})


def _embeddings(table: PairTable, image: np.ndarray, text: np.ndarray) -> Embeddings:
    return Embeddings(image=image.astype(np.float32), text=text.astype(np.float32),
                      logit_scale=10.0, ids=table.ids.astype(str))


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, N)
    signal = rng.normal(size=(N, D)) + np.outer(2 * labels - 1, np.eye(D)[0]) * 1.2
    noise = rng.normal(size=(N, D))
    return labels, signal, noise


def _test_auc(table: PairTable, probabilities: np.ndarray) -> float:
    rows = table.split_indices("test")
    return roc_auc_score(table.labels[rows], probabilities[rows])


def test_learns_signal_and_not_noise() -> None:
    labels, signal, noise = _data()
    table = _table(labels)
    from_signal = linear_probe(_embeddings(table, signal, noise), table)
    from_noise = linear_probe(_embeddings(table, noise, signal), table)
    assert from_signal.shape == (N,) and np.all((from_signal >= 0) & (from_signal <= 1))
    assert _test_auc(table, from_signal) > 0.85
    assert abs(_test_auc(table, from_noise) - 0.5) < 0.15


def test_image_plus_text_uses_the_text() -> None:
    labels, signal, noise = _data(1)
    table = _table(labels)
    embeddings = _embeddings(table, noise, signal)
    assert _test_auc(table, linear_probe(embeddings, table, features="image")) < 0.65
    assert _test_auc(table, linear_probe(embeddings, table, features="image+text")) > 0.85


def test_matches_sklearn_at_the_chosen_regularisation() -> None:
    """Same probabilities as scikit-learn fit directly, for one of the grid's C values, and
    the C chosen minimises the validation log-loss."""
    from sklearn.metrics import log_loss

    labels, signal, noise = _data(2)
    table = _table(labels)
    got = linear_probe(_embeddings(table, signal, noise), table)
    train, val = table.split_indices("train"), table.split_indices("val")
    scaler = StandardScaler().fit(signal[train])
    candidates = {}
    for C in C_GRID:
        model = LogisticRegression(C=C, max_iter=5000).fit(scaler.transform(signal[train]),
                                                          labels[train])
        p = model.predict_proba(scaler.transform(signal))[:, 1]
        candidates[C] = (log_loss(labels[val], p[val]), p)
    best = min(candidates, key=lambda C: candidates[C][0])
    np.testing.assert_allclose(got, candidates[best][1], atol=1e-4)


def test_scale_of_the_embeddings_does_not_matter() -> None:
    labels, signal, noise = _data(3)
    table = _table(labels)
    base = linear_probe(_embeddings(table, signal, noise), table)
    scaled = linear_probe(_embeddings(table, 50 * signal + 3, noise), table)
    np.testing.assert_allclose(base, scaled, atol=1e-4)


def test_impossible_inputs() -> None:
    labels, signal, noise = _data(4)
    one_class = _table(np.where(np.arange(N) % 5 < 3, 1, labels))
    with pytest.raises(DataError, match="training split has a single class"):
        linear_probe(_embeddings(one_class, signal, noise), one_class)
    no_val = _table(labels, np.array(["train", "test"] * (N // 2)))
    with pytest.raises(DataError, match="no validation pairs"):
        linear_probe(_embeddings(no_val, signal, noise), no_val)
    table = _table(labels)
    with pytest.raises(ConfigError, match="expected 'image' or 'image\\+text'"):
        linear_probe(_embeddings(table, signal, noise), table, features="text")
