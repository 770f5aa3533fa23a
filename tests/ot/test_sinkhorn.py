"""The debiased Sinkhorn divergence against independent references: POT, geomloss, W2."""

from __future__ import annotations

import numpy as np
import ot as pot
import pytest
import torch
from geomloss import SamplesLoss

from fairvlm import ot
from fairvlm.errors import ConfigError, DataError


def _clouds(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two different-shaped 1-D samples (normal vs skewed gamma), so S is far from 0."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.gamma(3.0, 0.5, size=m)


@pytest.mark.parametrize(("n", "m", "blur_factor"), [
    (8, 11, 0.05), (8, 11, 0.2), (8, 11, 1.0),
    (32, 24, 0.1), (32, 24, 0.5),
    (128, 100, 0.2), (128, 100, 1.0),
    (512, 384, 1.0),
    (2048, 256, 1.0),
])
def test_matches_converged_pot_reference(n, m, blur_factor, pot_divergence):
    x, y = _clouds(n, m, seed=n + m)
    blur = blur_factor * np.concatenate([x, y]).std()
    expected = pot_divergence(x, y, blur)
    assert ot.sinkhorn_divergence(x, y, blur=blur) == pytest.approx(expected, rel=1e-3)
    assert ot.sinkhorn_divergence(x, y, blur=blur, tol=1e-12) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("blur", [0.3, 1.0])
def test_is_what_geomloss_computes_once_converged(blur):
    """Same convention as SamplesLoss("sinkhorn", p=2, blur): at a slow annealing (scaling
    0.995) geomloss converges to our value."""
    x, y = _clouds(32, 24, seed=5)
    geomloss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.995)
    expected = float(geomloss(torch.tensor(x)[:, None], torch.tensor(y)[:, None]))
    assert ot.sinkhorn_divergence(x, y, blur=blur) == pytest.approx(expected, rel=1e-4)


def test_tends_to_half_squared_w2_as_blur_vanishes():
    x, y = _clouds(40, 30, seed=3)
    spread = np.concatenate([x, y]).std()
    half_w2 = pot.wasserstein_1d(x, y, p=2) / 2
    gaps = [abs(ot.sinkhorn_divergence(x, y, blur=f * spread) - half_w2) / half_w2
            for f in (0.3, 0.1, 0.03, 0.01)]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-3


def test_is_symmetric_and_zero_between_equal_samples():
    x, y = _clouds(20, 13, seed=4)
    assert ot.sinkhorn_divergence(x, y, blur=0.2) == pytest.approx(
        ot.sinkhorn_divergence(y, x, blur=0.2), rel=1e-9)
    assert abs(ot.sinkhorn_divergence(x, x, blur=0.2)) < 1e-12
    assert ot.sinkhorn_divergence(x, y, blur=0.2) > 0


def test_gradients_match_finite_differences():
    x, y = (torch.tensor(v, requires_grad=True) for v in _clouds(6, 9, seed=6))
    assert torch.autograd.gradcheck(
        lambda a, b: ot.sinkhorn_divergence(a, b, blur=0.4, tol=1e-14), (x, y))


def test_group_gradients_match_finite_differences():
    """Group members appear on both sides of OT(D_g, D): both paths carry gradient."""
    values = torch.tensor(np.random.default_rng(7).normal(size=10), requires_grad=True)
    groups = torch.tensor([0, 1, 0, 0, 1, 2, 1, 0, -1, 1])
    assert torch.autograd.gradcheck(
        lambda v: ot.group_sinkhorn_divergences(v, groups, 3, blur=0.5, tol=1e-14)[0], (values,))


def test_numpy_and_torch_give_the_same_numbers():
    x, y = _clouds(30, 20, seed=8)
    from_numpy = ot.sinkhorn_divergence(x, y, blur=0.3)
    from_torch = ot.sinkhorn_divergence(torch.tensor(x), torch.tensor(y), blur=0.3)
    assert isinstance(from_numpy, float)
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float64
    assert float(from_torch) == pytest.approx(from_numpy, rel=1e-12)
    as_float32 = ot.sinkhorn_divergence(torch.tensor(x, dtype=torch.float32), y, blur=0.3)
    assert as_float32.dtype == torch.float32
    assert float(as_float32) == pytest.approx(from_numpy, rel=1e-5)


def test_warns_when_max_iter_is_too_small():
    x, y = _clouds(30, 20, seed=9)
    with pytest.warns(RuntimeWarning, match="max_iter=1"):
        ot.sinkhorn_divergence(x, y, blur=0.05, max_iter=1)


@pytest.mark.parametrize(("kwargs", "error", "field"), [
    ({"x": [0.0, np.nan]}, DataError, "x"),
    ({"y": np.zeros((2, 2))}, DataError, "y"),
    ({"y": []}, DataError, "y"),
    ({"blur": 0.0}, ConfigError, "blur"),
    ({"scaling": 1.0}, ConfigError, "scaling"),
    ({"max_iter": 0}, ConfigError, "max_iter"),
])
def test_bad_input_is_one_line_naming_the_field(kwargs, error, field):
    arguments = {"x": [0.0, 1.0], "y": [0.5, 2.0], **kwargs}
    with pytest.raises(error, match=f"^{field}: ") as raised:
        ot.sinkhorn_divergence(arguments.pop("x"), arguments.pop("y"), **arguments)
    assert "\n" not in str(raised.value)


def test_newton_and_averaged_self_potentials_agree(monkeypatch):
    """OT(a, a) takes Newton steps up to _SYMMETRIC_NEWTON_MAX points and averaged updates
    above; both reach the same fixed point f = T_a(f)."""
    from fairvlm.ot import _potentials

    x = np.random.default_rng(10).gamma(2.0, 0.5, size=(2, 60))
    log_a = np.full_like(x, -np.log(60))
    newton = _potentials.symmetric_potential(x, log_a, 0.01, 1e-12, 100)
    monkeypatch.setattr(_potentials, "_SYMMETRIC_NEWTON_MAX", 10)
    averaged = _potentials.symmetric_potential(x, log_a, 0.01, 1e-12, 200)
    np.testing.assert_allclose(newton, averaged, rtol=0, atol=1e-11)


def test_few_newton_steps_when_the_tail_has_an_isolated_value(monkeypatch):
    """Every other value of a long-tailed sample whose largest value sits 3 further out: the
    tail's potentials lag while annealing until their plan rows decouple in float64, and the
    damped Newton steps crawled (50 steps before rows were Sinkhorn-balanced first, now 10)."""
    from fairvlm.ot import _potentials

    steps = []
    direction = _potentials._SemiDual.newton_direction
    monkeypatch.setattr(_potentials._SemiDual, "newton_direction",
                        lambda state: steps.append(state.eps) or direction(state))
    y = np.random.default_rng(1).gamma(2.0, 0.6, size=200)
    y[np.argmax(y)] += 3.0
    x = np.sort(y)[::2]
    blur = 0.05 * y.std()
    value = ot.sinkhorn_divergence(x, y, blur=blur)
    assert len(steps) <= 12
    assert value == pytest.approx(ot.sinkhorn_divergence(x, y, blur=blur, tol=1e-12), rel=1e-7)
