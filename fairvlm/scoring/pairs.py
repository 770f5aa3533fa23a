"""Per-pair scores of one checkpoint: how well each image matches its own note.

Within one split of n pairs with unit embeddings ``u_i`` (image), ``v_i`` (text) and logit
scale ``s``, let ``S_ij = u_i . v_j`` and ``L_ij = s S_ij``. For pair i:

similarity
    ``S_ii``, the matched cosine.
loss
    the symmetric CLIP loss of the pair against every other pair of the split as negatives,
    ``l_i = 0.5 (CE_row_i + CE_col_i)`` with ``CE_row_i = logsumexp_j L_ij - L_ii`` and
    ``CE_col_i = logsumexp_j L_ji - L_ii`` (METHOD.md, section 1, over the split instead of a
    batch).
rank
    the rank of the true note among all notes of the split for this image,
    ``1 + #{j != i : S_ij > S_ii}`` (1 = best; ties count in the pair's favour).
margin
    ``S_ii - max_{j != i} S_ij`` (negative when a wrong note matches better; NaN when the
    split has a single pair).

The ``n x n`` matrix is never built whole: rows and columns are processed in blocks of
:data:`BLOCK_ROWS` (about 40 MB of float32 per block at n = 10,000).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairvlm.data.table import PairTable
from fairvlm.errors import DataError
from fairvlm.scoring.embeddings import Embeddings

BLOCK_ROWS = 1024
SCORE_COLUMNS: tuple[str, ...] = ("id", "similarity", "loss", "rank", "margin")


def pair_scores(embeddings: Embeddings, table: PairTable, *, split: str) -> pd.DataFrame:
    """Similarity, loss, rank and margin of every pair of ``split`` (see the module docstring).

    Returns a frame with columns :data:`SCORE_COLUMNS`, in table order.
    """
    embeddings.check_aligned(table)
    rows = table.split_indices(split)
    if len(rows) == 0:
        raise DataError(f"{table.name}: split {split!r} has no pairs")
    U = np.ascontiguousarray(embeddings.image[rows], dtype=np.float32)
    V = np.ascontiguousarray(embeddings.text[rows], dtype=np.float32)
    s = float(embeddings.logit_scale)
    similarity, row_lse, rank, margin = _image_to_text(U, V, s)
    column_lse = _text_to_image_lse(U, V, s)
    matched = s * similarity.astype(np.float64)
    loss = 0.5 * ((row_lse - matched) + (column_lse - matched))
    return pd.DataFrame({
        "id": embeddings.ids[rows],
        "similarity": similarity.astype(np.float64),
        "loss": loss,
        "rank": rank,
        "margin": margin,
    })


def _image_to_text(U: np.ndarray, V: np.ndarray, s: float):
    """Row-wise quantities of S: matched cosine, logsumexp of s S_i., rank and margin."""
    n = len(U)
    similarity = np.empty(n, dtype=np.float32)
    row_lse = np.empty(n, dtype=np.float64)
    rank = np.empty(n, dtype=np.int64)
    margin = np.full(n, np.nan, dtype=np.float64)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        block = U[start:stop] @ V.T                      # S[start:stop, :]
        local = np.arange(stop - start)
        own = block[local, local + start]
        similarity[start:stop] = own
        row_lse[start:stop] = _scaled_logsumexp(block, s)
        rank[start:stop] = 1 + (block > own[:, None]).sum(axis=1)
        if n > 1:
            block[local, local + start] = -np.inf
            margin[start:stop] = own.astype(np.float64) - block.max(axis=1)
    return similarity, row_lse, rank, margin


def _text_to_image_lse(U: np.ndarray, V: np.ndarray, s: float) -> np.ndarray:
    """``logsumexp_j s S_ji`` for every i (column-wise), in row blocks of ``S^T = V U^T``."""
    n = len(U)
    out = np.empty(n, dtype=np.float64)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        out[start:stop] = _scaled_logsumexp(V[start:stop] @ U.T, s)
    return out


def _scaled_logsumexp(block: np.ndarray, s: float) -> np.ndarray:
    """Row-wise ``logsumexp_j s B_ij``, stable (max subtracted), summed in float64."""
    peak = block.max(axis=1)
    shifted = block - peak[:, None]
    shifted *= s
    np.exp(shifted, out=shifted)
    return s * peak.astype(np.float64) + np.log(shifted.sum(axis=1, dtype=np.float64))
