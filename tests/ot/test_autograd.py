"""Host-computed values with known Jacobians as one autograd node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairvlm.ot._autograd import with_jacobians


def test_backward_multiplies_by_the_jacobians_and_adds_repeated_inputs():
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = torch.tensor([4.0, 5.0], dtype=torch.float32, requires_grad=True)
    jx, jy = np.arange(6.0).reshape(2, 3), np.array([[1.0, -1.0], [0.5, 2.0]])
    values = with_jacobians(np.array([10.0, 20.0]), [(x, jx), (y, jy), (x, 2 * jx)],
                            device=x.device)
    assert values.tolist() == [10.0, 20.0]
    (values * torch.tensor([1.0, 3.0], dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * (jx[0] + 3 * jx[1]))
    assert y.grad.dtype == torch.float32
    np.testing.assert_allclose(y.grad.numpy(), jy[0] + 3 * jy[1])


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_no_graph_without_an_input_that_needs_one(grad_enabled):
    x = torch.tensor([1.0, 2.0], requires_grad=grad_enabled)
    with torch.set_grad_enabled(grad_enabled):
        values = with_jacobians(np.array([3.0]), [(x.detach(), np.ones((1, 2)))],
                                device=x.device)
    assert values.grad_fn is None and values.dtype == torch.float64
