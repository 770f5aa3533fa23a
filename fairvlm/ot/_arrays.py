"""Numpy or torch in, the same kind out: input checks and conversions for :mod:`fairvlm.ot`.

Every public function of :mod:`fairvlm.ot` accepts numpy arrays (or sequences) and torch
tensors. The computation runs in float64 (the Sinkhorn solver in numpy on the host, W2 in
torch); torch inputs keep their autograd graph and device, and the result goes back to the
caller's kind: a torch tensor of the caller's floating dtype, or a Python float / numpy array.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairvlm.errors import ConfigError, DataError
from fairvlm.host import host_array

ArrayLike = Any  # numpy array, sequence of numbers or torch tensor


def as_sample(values: ArrayLike, name: str, *, device: torch.device | None = None,
              check_finite: bool = True) -> torch.Tensor:
    """``values`` as a 1-D, non-empty, finite float64 tensor (differentiable for torch input).

    ``check_finite=False`` leaves the finiteness check to :func:`host_sample`, for callers that
    read the values to the host anyway (the check reads a device tensor once more)."""
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(
        np.asarray(values, dtype=np.float64))
    if device is not None:
        tensor = tensor.to(device)
    if tensor.ndim != 1:
        raise DataError(f"{name}: expected a 1-D array of numbers, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise DataError(f"{name}: expected at least one value, got an empty array")
    if check_finite:
        _check_finite(int((~torch.isfinite(tensor)).sum()), name)
    return tensor.to(torch.float64)


def host_sample(sample: torch.Tensor, name: str) -> np.ndarray:
    """A sample from :func:`as_sample` as a numpy array, checked to be finite (one device
    read)."""
    values = sample.detach().cpu().numpy()
    _check_finite(int(np.count_nonzero(~np.isfinite(values))), name)
    return values


def _check_finite(bad: int, name: str) -> None:
    if bad:
        raise DataError(f"{name}: expected finite numbers, got {bad} NaN or infinite values")


def as_group_codes(group_index: ArrayLike, n_values: int, n_groups: int) -> np.ndarray:
    """``group_index`` as an int64 numpy array of codes in ``[-1, n_groups)`` (-1 = no group)."""
    codes = host_array(group_index)
    if codes.ndim != 1 or codes.shape[0] != n_values:
        raise DataError(f"group_index: expected one code per value ({n_values}), "
                        f"got shape {codes.shape}")
    if codes.size and not np.issubdtype(codes.dtype, np.integer):
        raise DataError(f"group_index: expected integer group codes, got dtype {codes.dtype}")
    if n_groups < 1:
        raise ConfigError(f"n_groups: expected a positive number of groups, got {n_groups}")
    codes = codes.astype(np.int64)
    if codes.size and codes.max() >= n_groups:
        raise DataError(f"group_index: expected codes below n_groups={n_groups} "
                        f"(negative = no group), got {int(codes.max())}")
    return np.where(codes < 0, -1, codes)


def check_positive(value: float, name: str) -> float:
    """``value`` as a float, or a :class:`ConfigError` if it is not a finite number > 0."""
    if not (np.isfinite(value) and value > 0):
        raise ConfigError(f"{name}: expected a positive number, got {value}")
    return float(value)


def check_count(value: int, name: str) -> int:
    """``value`` as an int, or a :class:`ConfigError` if it is not an integer >= 1."""
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ConfigError(f"{name}: expected a whole number >= 1, got {value}")
    return int(value)


def input_device(*inputs: ArrayLike) -> torch.device:
    """The device of the first torch input (CPU when every input is numpy)."""
    for item in inputs:
        if isinstance(item, torch.Tensor):
            return item.device
    return torch.device("cpu")


def output_dtype(*inputs: ArrayLike) -> torch.dtype | None:
    """The floating dtype of the first torch input, or ``None`` when every input is numpy."""
    for item in inputs:
        if isinstance(item, torch.Tensor):
            return item.dtype if item.is_floating_point() else torch.float64
    return None


def to_caller(result: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor | float | np.ndarray:
    """``result`` in the caller's kind: a tensor of ``dtype``, or a float / numpy array."""
    if dtype is not None:
        return result.to(dtype)
    array = result.detach().cpu().numpy()
    return float(array) if array.ndim == 0 else array
