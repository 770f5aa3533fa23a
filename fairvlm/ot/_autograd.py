"""Values computed on the host, with gradients known on the host, as one autograd node.

The Sinkhorn solver runs in float64 numpy and returns each value's gradient with respect to
every input point (:class:`fairvlm.ot._sinkhorn.Transport`). :func:`with_jacobians` wraps such
values as a tensor on the inputs' device whose backward pass is the product with those
Jacobians: for outputs ``v_k`` and an input ``z``,

    dL/dz_i = sum_k (dL/dv_k) * J_ki,   J_ki = dv_k / dz_i.

Values and Jacobians travel to the device in one copy, and nothing is read back from the
device, so a training step on a GPU pays one transfer each way for its fairness term.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def with_jacobians(values: np.ndarray, jacobians: Sequence[tuple[Tensor, np.ndarray]], *,
                   device: torch.device) -> Tensor:
    """``values`` (``K``,) as a float64 tensor on ``device`` differentiable in each input.

    Parameters
    ----------
    values
        The ``K`` values, computed elsewhere.
    jacobians
        ``(input, J)`` pairs: a 1-D tensor ``z`` of ``N`` entries and the ``(K, N)`` array
        ``J_ki = d values_k / d z_i``. The same tensor may appear more than once (its
        gradients add up). Inputs that do not require a gradient may be left out.
    device
        Where the result lives.
    """
    values = np.asarray(values, dtype=np.float64)
    live = [(tensor, jacobian) for tensor, jacobian in jacobians if tensor.requires_grad]
    if not (live and torch.is_grad_enabled()):
        return torch.as_tensor(values, device=device)
    packed = torch.as_tensor(np.concatenate([values, *(j.ravel() for _, j in live)]),
                             device=device)
    sizes = [values.size, *(j.size for _, j in live)]
    on_device = packed.split(sizes)
    shapes = [jacobian.shape for _, jacobian in live]
    matrices = [flat.view(shape) for flat, shape in zip(on_device[1:], shapes, strict=True)]
    return _KnownJacobians.apply(on_device[0], matrices, *(tensor for tensor, _ in live))


class _KnownJacobians(torch.autograd.Function):
    """Identity on the values; backward multiplies the output gradient by the Jacobians."""

    @staticmethod
    def forward(ctx, values: Tensor, matrices: list[Tensor], *inputs: Tensor) -> Tensor:
        ctx.matrices = matrices
        ctx.dtypes = [tensor.dtype for tensor in inputs]
        return values.view_as(values)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        grads = tuple((grad @ matrix).to(dtype)
                      for matrix, dtype in zip(ctx.matrices, ctx.dtypes, strict=True))
        return (None, None, *grads)
