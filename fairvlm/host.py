"""Values as host (numpy) arrays, whether they come as torch tensors on any device or not."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def host_array(values: torch.Tensor | np.ndarray | Any) -> np.ndarray:
    """``values`` as a numpy array: a tensor is detached and copied from its device (one read
    of device memory), anything else goes through ``np.asarray``."""
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)
