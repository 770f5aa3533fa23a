"""Linear probe: logistic regression on frozen embeddings.

Features ``z_i`` are the image embedding ``u_i`` (``"image"``) or ``[u_i, v_i]``
(``"image+text"``), standardised with the training split's mean and standard deviation. For
each inverse regularisation strength ``C`` in :data:`C_GRID` the model

    p(glaucoma | z) = 1 / (1 + exp(-(w . z + b))),
    (w, b) = argmin  (1/2) ||w||^2 + C sum_{i in train} log-loss(y_i, p(z_i)),

is fit on the training split; the ``C`` with the lowest validation log-loss is kept, and its
probabilities for every row are returned. Thresholds are chosen later, on validation, by the
metrics.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

from fairvlm.data.table import PairTable
from fairvlm.errors import ConfigError, DataError
from fairvlm.scoring.embeddings import Embeddings

C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
Features = Literal["image", "image+text"]
_MAX_ITER = 5000


def linear_probe(embeddings: Embeddings, table: PairTable, *, features: Features = "image",
                 seed: int = 0) -> np.ndarray:
    """Probability of glaucoma for every row of ``table`` (float64 ``[N]``).

    Raises
    ------
    ConfigError
        Unknown ``features``.
    DataError
        Embeddings of another table, a training split without both classes, or no validation
        rows to choose ``C`` on.
    """
    embeddings.check_aligned(table)
    X = _features(embeddings, features)
    y = table.labels
    train, val = table.split_indices("train"), table.split_indices("val")
    if len(np.unique(y[train])) < 2:
        raise DataError(f"{table.name}: the training split has a single class; the linear probe "
                        "needs glaucoma and non-glaucoma training pairs")
    if len(val) == 0:
        raise DataError(f"{table.name}: no validation pairs; the linear probe chooses its "
                        "regularisation on the validation split")
    scaler = StandardScaler().fit(X[train])
    Z = scaler.transform(X)
    best: tuple[float, LogisticRegression] | None = None
    for C in C_GRID:
        model = LogisticRegression(C=C, max_iter=_MAX_ITER, random_state=seed)
        model.fit(Z[train], y[train])
        loss = log_loss(y[val], model.predict_proba(Z[val])[:, 1], labels=[0, 1])
        if best is None or loss < best[0]:
            best = (loss, model)
    return best[1].predict_proba(Z)[:, 1]


def _features(embeddings: Embeddings, features: str) -> np.ndarray:
    if features == "image":
        return embeddings.image.astype(np.float64)
    if features == "image+text":
        return np.hstack([embeddings.image, embeddings.text]).astype(np.float64)
    raise ConfigError(f"linear probe features {features!r}: expected 'image' or 'image+text'")
