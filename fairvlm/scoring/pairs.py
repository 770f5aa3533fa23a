"""Per-pair scores of one checkpoint: how well each image matches its own note.

Within one split of n pairs with unit embeddings ``u_i`` (image), ``v_i`` (text) and logit
scale ``s``, let ``S_ij = u_i . v_j`` and ``L_ij = s S_ij``. Pair i is scored against a set
``N_i`` of other pairs of the split, its negatives, with weight ``w_i = (n - 1) / |N_i|``:

similarity
    ``S_ii``, the matched cosine.
loss
    the symmetric CLIP loss of the pair against its negatives,
    ``l_i = 0.5 (CE_row_i + CE_col_i)`` with
    ``CE_row_i = log(exp(L_ii) + w_i sum_{j in N_i} exp(L_ij)) - L_ii`` and ``CE_col_i`` the
    same with ``L_ji`` (METHOD.md, section 1, over the split instead of a batch).
rank
    the rank of the true note among all notes of the split for this image,
    ``1 + round(w_i #{j in N_i : S_ij > S_ii})`` (1 = best; ties count in the pair's favour).
margin
    ``S_ii - max_{j in N_i} S_ij`` (negative when a wrong note matches better; NaN when the
    split has a single pair).
negatives
    ``|N_i|``; and ``sampled``: whether ``N_i`` is a random sample (below).

Exact (``n - 1 <= max_negatives``): ``N_i`` is every other pair of the split and ``w_i = 1``, so
the loss is the per-pair CLIP loss of the split as one batch (its mean is the CLIP loss) and
the rank is exact. Cost ``O(n^2 d)``.

Sampled (larger splits): one seeded random set ``J`` of ``max_negatives`` pairs of the split,
shared by all pairs, and ``N_i = J \\ {i}``. Whether or not i is in ``J``, ``N_i`` is a uniform
random subset of the other ``n - 1`` pairs, so ``w_i sum_{j in N_i} exp(L_ij)`` is an unbiased
estimate of ``sum_{j != i} exp(L_ij)`` (``exp(CE)`` is unbiased; the loss, its logarithm, is
slightly low on average, by Jensen's inequality) and the rank before rounding is an unbiased
estimate of the exact rank, on the same 1..n scale. The margin is over the sampled notes only:
it is at least the exact margin. Cost ``O(n max_negatives d)``: linear in n.

The score matrix is never built whole: it is processed in row blocks of about
:data:`BLOCK_ENTRIES` entries (16 MB of float32). In the exact case one pass computes both
sides: the column log-sum-exp is accumulated over the blocks as a streaming log-sum-exp,
started from the pair's own term: with the running column peak ``c_j`` and sum
``z_j = sum_i exp(L_ij - s c_j)`` over the rows seen, a block with column peak ``c'_j`` gives
``c_j <- max(c_j, c'_j)``, ``z_j <- z_j exp(s (c_old_j - c_j)) + sum_block exp(L_ij - s c_j)``,
and finally ``logsumexp_i L_ij = s c_j + log z_j``. The sampled case makes a second pass with
the roles of images and notes swapped.
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral

import numpy as np
import pandas as pd

from fairvlm.data.table import PairTable
from fairvlm.errors import ConfigError, DataError
from fairvlm.scoring.embeddings import Embeddings

BLOCK_ENTRIES = 2**22
MAX_NEGATIVES = 10_000
SCORE_COLUMNS: tuple[str, ...] = ("id", "similarity", "loss", "rank", "margin", "negatives",
                                  "sampled")


def pair_scores(embeddings: Embeddings, table: PairTable, *, split: str,
                max_negatives: int = MAX_NEGATIVES, seed: int = 0) -> pd.DataFrame:
    """Similarity, loss, rank and margin of every pair of ``split`` (see the module docstring).

    Parameters
    ----------
    max_negatives
        Splits of at most ``max_negatives + 1`` pairs are scored exactly; larger ones against a
        random sample of ``max_negatives`` pairs.
    seed
        Seed of that sample (numpy ``default_rng``).

    Returns a frame with columns :data:`SCORE_COLUMNS`, in table order.

    Raises
    ------
    DataError
        The split has no pairs.
    ConfigError
        ``max_negatives`` is not a positive integer.
    """
    if isinstance(max_negatives, bool) or not isinstance(max_negatives, Integral) \
            or max_negatives < 1:
        raise ConfigError(f"pair scores field max_negatives: {max_negatives!r}; expected an "
                          "integer >= 1")
    embeddings.check_aligned(table)
    rows = table.split_indices(split)
    if len(rows) == 0:
        raise DataError(f"{table.name}: split {split!r} has no pairs")
    U = np.ascontiguousarray(embeddings.image[rows], dtype=np.float32)
    V = np.ascontiguousarray(embeddings.text[rows], dtype=np.float32)
    sample = negative_sample(len(rows), max_negatives, seed)
    return pd.DataFrame({"id": embeddings.ids[rows],
                         **_quantities(U, V, float(embeddings.logit_scale), sample)})


def negative_sample(n: int, max_negatives: int, seed: int) -> np.ndarray | None:
    """The positions (sorted) of the sampled negatives of a split of ``n`` pairs, or ``None``
    when the split is scored exactly (``n - 1 <= max_negatives``)."""
    if n - 1 <= max_negatives:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_negatives, replace=False))


def _quantities(U: np.ndarray, V: np.ndarray, s: float, sample: np.ndarray | None
                ) -> dict[str, np.ndarray]:
    """The score columns but ``id`` (see the module docstring); ``sample`` is
    :func:`negative_sample`'s."""
    n = len(U)
    columns = np.arange(n) if sample is None else sample
    position = np.full(n, -1, dtype=np.int64)
    position[columns] = np.arange(len(columns))
    negatives = len(columns) - (position >= 0).astype(np.int64)
    weight = (n - 1) / np.maximum(negatives, 1)
    own = np.einsum("ij,ij->i", U, V)
    if sample is None:
        column = _ColumnLogSumExp(own, s)
        row_lse, above, best = _row_side(U, V, own, s, columns, position, weight, column)
        column_lse = column.result()
    else:
        row_lse, above, best = _row_side(U, V, own, s, columns, position, weight)
        column_lse = _row_side(V, U, own, s, columns, position, weight)[0]
    similarity = own.astype(np.float64)
    with np.errstate(invalid="ignore"):
        margin = np.where(negatives > 0, similarity - best, np.nan)
    return {"similarity": similarity,
            "loss": 0.5 * ((row_lse - s * similarity) + (column_lse - s * similarity)),
            "rank": 1 + np.rint(weight * above).astype(np.int64),
            "margin": margin,
            "negatives": negatives,
            "sampled": np.full(n, sample is not None)}


def _blocks(A: np.ndarray, B: np.ndarray, columns: np.ndarray, position: np.ndarray
            ) -> Iterator[tuple[slice, np.ndarray]]:
    """Row blocks of ``A B[columns]^T``, with each pair's own entry (``position[i]``-th column
    of row i, where ``>= 0``) set to ``-inf``."""
    others = B[columns]
    step = max(1, BLOCK_ENTRIES // len(columns))
    for start in range(0, len(A), step):
        stop = min(len(A), start + step)
        block = A[start:stop] @ others.T
        local = np.flatnonzero(position[start:stop] >= 0)
        block[local, position[start + local]] = -np.inf
        yield slice(start, stop), block


def _row_side(A: np.ndarray, B: np.ndarray, own: np.ndarray, s: float, columns: np.ndarray,
              position: np.ndarray, weight: np.ndarray,
              column: _ColumnLogSumExp | None = None):
    """For every row i of ``A`` against ``B[columns]``: ``log(exp(s own_i) + w_i sum_j
    exp(s A_i . B_j))`` over its negatives, the count of negatives above ``own_i`` and the
    largest negative (``-inf`` if none). ``column`` (exact case) folds in every block."""
    n = len(A)
    lse = np.empty(n, dtype=np.float64)
    above = np.empty(n, dtype=np.int64)
    best = np.empty(n, dtype=np.float64)
    for rows, block in _blocks(A, B, columns, position):
        if column is not None:
            column.fold(block)
        mine = own[rows]
        top = block.max(axis=1)
        best[rows] = top
        above[rows] = (block > mine[:, None]).sum(axis=1)
        peak = np.maximum(mine, top)
        block -= peak[:, None]
        block *= s
        np.exp(block, out=block)
        total = block.sum(axis=1, dtype=np.float64)
        start = np.exp(s * (mine - peak).astype(np.float64))
        lse[rows] = s * peak.astype(np.float64) + np.log(start + weight[rows] * total)
    return lse, above, best


class _ColumnLogSumExp:
    """Streaming ``logsumexp_j`` over the rows of the blocks of each column i, started from
    the pair's own term ``s own_i`` (see the module docstring)."""

    def __init__(self, own: np.ndarray, s: float) -> None:
        self.peak = own.copy()
        self.sum = np.ones(len(own), dtype=np.float64)
        self.s = s

    def fold(self, block: np.ndarray) -> None:
        peak = np.maximum(self.peak, block.max(axis=0))
        self.sum *= np.exp(self.s * (self.peak - peak).astype(np.float64))
        shifted = block - peak
        shifted *= self.s
        np.exp(shifted, out=shifted)
        self.sum += shifted.sum(axis=0, dtype=np.float64)
        self.peak = peak

    def result(self) -> np.ndarray:
        return self.s * self.peak.astype(np.float64) + np.log(self.sum)
