r"""Exact squared 2-Wasserstein distance between 1-D uniform empirical measures.

In 1-D the optimal plan for a convex cost is the monotone (quantile) coupling:

.. math::
    W_2^2(\alpha, \beta) = \int_0^1 |F_\alpha^{-1}(t) - F_\beta^{-1}(t)|^2\, dt
    = \sum_k w_k\, (x_{(i_k)} - y_{(j_k)})^2,

where :math:`x_{(i)}`, :math:`y_{(j)}` are the sorted samples (sizes ``n`` and ``m``) and the
pieces :math:`k` are the intervals between consecutive points of
:math:`\{i/n\} \cup \{j/m\}`: on each, both quantile functions are constant. The breakpoints are
computed as integers (multiples of ``1/(n m)``), so the coupling is exact. Sorting is
differentiable in torch, so the distance is too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def monotone_coupling(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``(i_k, j_k)`` into the sorted samples and masses ``w_k`` (summing to 1) of the
    quantile coupling between ``n`` and ``m`` equally weighted points."""
    breaks = np.union1d(np.arange(1, n + 1) * m, np.arange(1, m + 1) * n)
    masses = np.diff(breaks, prepend=0) / (n * m)
    return (breaks - 1) // m, (breaks - 1) // n, masses


def squared_w2_rows(rows: Tensor, reference: Tensor) -> Tensor:
    """``W2^2`` between each row of ``rows`` (``K, n``, one sample a row) and ``reference``
    (``m``,), shape ``(K,)``."""
    source_index, reference_index, masses = monotone_coupling(rows.shape[1], reference.shape[0])
    sorted_rows = torch.sort(rows, dim=1).values
    sorted_reference = torch.sort(reference).values
    gaps = (sorted_rows[:, torch.as_tensor(source_index, device=rows.device)]
            - sorted_reference[torch.as_tensor(reference_index, device=rows.device)])
    return gaps.square() @ torch.as_tensor(masses, dtype=rows.dtype, device=rows.device)
