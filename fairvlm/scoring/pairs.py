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

The ``n x n`` matrix is never built whole, and computed once: it is processed in row blocks of
:data:`BLOCK_ROWS` (about 40 MB of float32 per block at n = 10,000). The column log-sum-exp is
accumulated over the blocks as a streaming log-sum-exp: with the running column peak ``c_j``
and sum ``z_j = sum_i exp(L_ij - c_j)`` over the rows seen, a block with column peak ``c'_j``
gives ``c_j <- max(c_j, c'_j)``, ``z_j <- z_j exp(c_old_j - c_j) + sum_block exp(L_ij - c_j)``,
and finally ``logsumexp_i L_ij = c_j + log z_j``.
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
    similarity, row_lse, column_lse, rank, margin = _block_quantities(U, V, s)
    matched = s * similarity.astype(np.float64)
    loss = 0.5 * ((row_lse - matched) + (column_lse - matched))
    return pd.DataFrame({
        "id": embeddings.ids[rows],
        "similarity": similarity.astype(np.float64),
        "loss": loss,
        "rank": rank,
        "margin": margin,
    })


def _block_quantities(U: np.ndarray, V: np.ndarray, s: float):
    """Matched cosine, row and column logsumexp of ``s S``, rank and margin, in one pass over
    the row blocks of S."""
    n = len(U)
    similarity = np.empty(n, dtype=np.float32)
    row_lse = np.empty(n, dtype=np.float64)
    rank = np.empty(n, dtype=np.int64)
    margin = np.full(n, np.nan, dtype=np.float64)
    column_peak = np.full(n, -np.inf, dtype=np.float32)
    column_sum = np.zeros(n, dtype=np.float64)
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        block = U[start:stop] @ V.T                      # S[start:stop, :]
        local = np.arange(stop - start)
        own = block[local, local + start]
        similarity[start:stop] = own
        row_lse[start:stop] = _scaled_logsumexp(block, s)
        _accumulate_column_logsumexp(block, s, column_peak, column_sum)
        rank[start:stop] = 1 + (block > own[:, None]).sum(axis=1)
        if n > 1:
            block[local, local + start] = -np.inf
            margin[start:stop] = own.astype(np.float64) - block.max(axis=1)
    column_lse = s * column_peak.astype(np.float64) + np.log(column_sum)
    return similarity, row_lse, column_lse, rank, margin


def _accumulate_column_logsumexp(block: np.ndarray, s: float, column_peak: np.ndarray,
                                 column_sum: np.ndarray) -> None:
    """Fold a row block into the running column peaks ``c_j`` of S and sums
    ``z_j = sum_i exp(s (S_ij - c_j))``, in place (see the module docstring)."""
    peak = np.maximum(column_peak, block.max(axis=0))
    column_sum *= np.exp(s * (column_peak.astype(np.float64) - peak))
    shifted = block - peak
    shifted *= s
    np.exp(shifted, out=shifted)
    column_sum += shifted.sum(axis=0, dtype=np.float64)
    column_peak[:] = peak


def _scaled_logsumexp(block: np.ndarray, s: float) -> np.ndarray:
    """Row-wise ``logsumexp_j s B_ij``, stable (max subtracted), summed in float64."""
    peak = block.max(axis=1)
    shifted = block - peak[:, None]
    shifted *= s
    np.exp(shifted, out=shifted)
    return s * peak.astype(np.float64) + np.log(shifted.sum(axis=1, dtype=np.float64))
