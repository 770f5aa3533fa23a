"""Per-pair CLIP loss, fairness term, objective: against open_clip, geomloss, POT, hand values."""

from __future__ import annotations

import math

import numpy as np
import ot as pot
import pytest
import torch
from geomloss import SamplesLoss
from open_clip.loss import ClipLoss

from fairvlm.errors import ConfigError
from fairvlm.train import losses
from fairvlm.train.losses import (
    FairnessConfig,
    fair_clip_objective,
    fairness_term,
    objective,
    pair_statistic,
    per_pair_clip_loss,
    reference_fairness_term,
    reference_statistic,
)


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, dim, generator=generator, dtype=torch.float64)
    return features / features.norm(dim=1, keepdim=True)


def _sinkhorn(x: torch.Tensor, y: torch.Tensor, blur: float) -> torch.Tensor:
    """geomloss's debiased Sinkhorn divergence (cost |x-y|^2/2, eps = blur^2), differentiable."""
    return SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.9)(x[:, None], y[:, None])


def _converged_sinkhorn(x: np.ndarray, y: np.ndarray, blur: float) -> float:
    """S_eps(x, y) = OT_eps(x, y) - (OT_eps(x, x) + OT_eps(y, y)) / 2 from POT's log-domain
    solver run to convergence in float64; OT_eps(a, b) = <P, C> + eps KL(P | a x b)."""

    def entropic_cost(u: np.ndarray, v: np.ndarray) -> float:
        a, b = np.full(len(u), 1 / len(u)), np.full(len(v), 1 / len(v))
        cost = 0.5 * (u[:, None] - v[None, :]) ** 2
        plan = pot.sinkhorn(a, b, cost, blur**2, method="sinkhorn_log", numItermax=200_000,
                            stopThr=1e-13)
        mass = plan > 0
        kl = (plan[mass] * np.log(plan[mass] / np.outer(a, b)[mass])).sum()
        return float((plan * cost).sum() + blur**2 * kl)

    return entropic_cost(x, y) - 0.5 * (entropic_cost(x, x) + entropic_cost(y, y))


def _stand_in_groups(values, group_index, n_groups, *, blur=0.1, min_count=1, reference=None):
    """Test-only stand-in for fairvlm.ot.group_sinkhorn_divergences, one geomloss call a group."""
    population = values if reference is None else reference
    group_index = torch.as_tensor(group_index)  # host codes or a tensor, as the real one takes
    counts = np.array([int((group_index == g).sum()) for g in range(n_groups)])
    distances = [
        _sinkhorn(values[group_index == g], population, blur) if counts[g] >= min_count
        else torch.tensor(float("nan"), dtype=values.dtype)
        for g in range(n_groups)
    ]
    return torch.stack(distances), counts


@pytest.fixture
def stand_in_ot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Route the fairness term's Sinkhorn calls to the geomloss stand-in (plumbing tests)."""
    monkeypatch.setattr(losses.ot, "group_sinkhorn_divergences", _stand_in_groups)


# --- per-pair CLIP loss ---------------------------------------------------------------------

def test_per_pair_loss_mean_equals_open_clip_clip_loss():
    image, text = _unit(16, 8, 0), _unit(16, 8, 1)
    scale = torch.tensor(14.3, dtype=torch.float64)
    per_pair = per_pair_clip_loss(image, text, scale)
    assert per_pair.shape == (16,)
    torch.testing.assert_close(per_pair.mean(), ClipLoss()(image, text, scale))


def test_per_pair_loss_is_both_directions_of_each_pair():
    image, text = _unit(6, 5, 2), _unit(6, 5, 3)
    logits = 3.0 * image @ text.T
    expected = [0.5 * ((torch.logsumexp(logits[i], 0) - logits[i, i])
                       + (torch.logsumexp(logits[:, i], 0) - logits[i, i])) for i in range(6)]
    torch.testing.assert_close(per_pair_clip_loss(image, text, 3.0), torch.stack(expected))


def test_per_pair_loss_hand_value():
    # L = I: every row and column is CE([1, 0], 0) = log(1 + e) - 1.
    eye = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(per_pair_clip_loss(eye, eye, 1.0),
                               torch.full((2,), math.log(1 + math.e) - 1, dtype=torch.float64))


def test_similarity_statistic_is_matched_cosine():
    image, text = _unit(5, 4, 4), _unit(5, 4, 5)
    values = pair_statistic("similarity", torch.zeros(5), image, text)
    torch.testing.assert_close(values, torch.diagonal(image @ text.T))


# --- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize(("changes", "field"), [
    ({"lam": -0.5}, "lambda"),
    ({"statistic": "cosine"}, "statistic"),
    ({"distance": "mmd"}, "distance"),
    ({"fair_on": "dirty"}, "fair_on"),
    ({"blur": 0.0}, "blur"),
    ({"min_per_group": 0}, "min_per_group"),
])
def test_bad_fairness_config_is_a_one_line_config_error(changes, field):
    with pytest.raises(ConfigError, match=field) as caught:
        FairnessConfig(**changes)
    assert "\n" not in str(caught.value)


# --- fairness term plumbing (stand-in Sinkhorn) ---------------------------------------------

def test_fairness_term_sums_group_divergences_and_skips_small_groups(stand_in_ot):
    values = torch.tensor([0.1, 0.5, 0.9, 1.3, 2.0, 2.2, 2.4, 2.6, 0.3, 5.0],
                          dtype=torch.float64, requires_grad=True)
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    term = fairness_term(values, groups, 4, FairnessConfig(min_per_group=3, blur=0.2))
    expected = [_sinkhorn(values[groups == g], values, 0.2) for g in (0, 1)]
    torch.testing.assert_close(term.value, expected[0] + expected[1])
    assert term.skipped == (2, 3)
    assert term.counts.tolist() == [4, 4, 2, 0]
    assert torch.isnan(term.distances[2:]).all()
    term.value.backward()
    assert torch.isfinite(values.grad).all() and values.grad.abs().sum() > 0


def test_fair_on_clean_leaves_flagged_pairs_out(stand_in_ot):
    values = torch.tensor([0.2, 0.4, 0.6, 9.0, 1.0, 1.2, 1.4, 1.6], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    flagged = np.array([False, False, False, True, False, False, False, False])
    clean = fairness_term(values, groups, 2, FairnessConfig(min_per_group=2, fair_on="clean"),
                          flagged=flagged)
    kept = values[~torch.from_numpy(flagged)]
    kept_groups = groups[~torch.from_numpy(flagged)]
    expected = sum(_sinkhorn(kept[kept_groups == g], kept, 0.1) for g in (0, 1))
    torch.testing.assert_close(clean.value, expected)
    assert clean.counts.tolist() == [3, 4]
    everything = fairness_term(values, groups, 2, FairnessConfig(min_per_group=2, fair_on="all"),
                               flagged=flagged)
    assert everything.counts.tolist() == [4, 4]
    assert float(everything.value) > float(clean.value)


def test_a_batch_with_every_pair_flagged_skips_the_term_instead_of_failing():
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    term = fairness_term(losses, np.array([0, 0, 1, 1]), 2,
                         FairnessConfig(min_per_group=2, fair_on="clean"),
                         flagged=np.ones(4, dtype=bool))
    assert float(term.value) == 0.0 and term.skipped == (0, 1)
    assert term.counts.tolist() == [0, 0]
    objective(losses, term, FairnessConfig(lam=1.0)).total.backward()
    torch.testing.assert_close(losses.grad, torch.full((4,), 0.25, dtype=torch.float64))
    logits = torch.eye(4, dtype=torch.float64)
    reference = reference_fairness_term(
        logits, {0: logits[:2, :2], 1: logits[2:, 2:]}, 2,
        FairnessConfig(statistic="reference", min_per_group=2, fair_on="clean"),
        flagged=np.ones(4, dtype=bool))
    assert float(reference.value) == 0.0 and reference.skipped == (0, 1)


def test_the_fairness_term_reads_the_batch_from_the_device_once(monkeypatch):
    """Forward and backward of the term read device memory once: the batch's values, moved
    to the host for the solve (a read means a GPU sync; group codes and flags stay on the
    host, the solver's values and gradients travel back in one copy)."""
    reads = []
    for name in ("cpu", "item", "tolist", "__int__", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    losses = torch.tensor([3.1, 2.7, 3.3, 2.9, 3.0, 3.6, 2.5, 3.2, 4.8, 3.4], requires_grad=True)
    term = fairness_term(losses, np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2]), 3,
                         FairnessConfig(min_per_group=2), flagged=np.eye(10, dtype=bool)[8])
    objective(losses, term, FairnessConfig(lam=0.5)).total.backward()
    assert reads == ["cpu"]
    assert term.skipped == () and torch.isfinite(losses.grad).all()


def test_objective_is_weighted_mean_plus_lambda_times_fairness(stand_in_ot):
    per_pair = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64, requires_grad=True)
    weights = torch.tensor([1.0, 0.5, 0.0, 1.0], dtype=torch.float64)
    fairness = fairness_term(per_pair, torch.tensor([0, 0, 1, 1]), 2,
                             FairnessConfig(min_per_group=2))
    terms = objective(per_pair, fairness, FairnessConfig(lam=0.3), weights=weights)
    clip = (1.0 + 1.0 + 0.0 + 4.0) / 4
    torch.testing.assert_close(terms.clip, torch.tensor(clip, dtype=torch.float64))
    torch.testing.assert_close(terms.total, clip + 0.3 * fairness.value)
    record = terms.as_record()
    assert record["clip"] == pytest.approx(1.5)
    assert record["weighted_fairness"] == pytest.approx(0.3 * record["fairness"])
    assert record["skipped_groups"] == []
    plain = objective(per_pair, None, FairnessConfig(lam=0.3), weights=weights)
    plain.total.backward()
    torch.testing.assert_close(per_pair.grad, weights / 4)  # weights are not differentiated


def test_fair_clip_objective_lambda_zero_is_clip_loss():
    image, text = _unit(8, 6, 6), _unit(8, 6, 7)
    terms = fair_clip_objective(per_pair_clip_loss(image, text, 10.0), image, text,
                                torch.zeros(8, dtype=torch.long), 1, FairnessConfig(lam=0.0))
    assert terms.fairness is None
    torch.testing.assert_close(terms.total, ClipLoss()(image, text, 10.0))


def test_fair_clip_objective_similarity_term_reaches_the_features(stand_in_ot):
    image = _unit(8, 6, 8).requires_grad_(True)
    text = _unit(8, 6, 9)
    groups = torch.tensor([0, 1] * 4)
    config = FairnessConfig(lam=1.0, statistic="similarity", min_per_group=2)
    terms = fair_clip_objective(per_pair_clip_loss(image, text, 10.0), image, text, groups, 2,
                                config)
    cosine = (image * text).sum(1)
    expected = sum(_sinkhorn(cosine[groups == g], cosine, 0.1) for g in (0, 1))
    torch.testing.assert_close(terms.fairness.value, expected)
    terms.fairness.value.backward()
    assert image.grad.abs().sum() > 0


def test_reference_term_reproduces_the_public_code(stand_in_ot):
    # finetune_FairCLIP.py: batch side diag(L L) with gradients; group side the same from a
    # separate group batch, normalised to sum 1, under no_grad.
    image, text = _unit(8, 6, 10), _unit(8, 6, 11)
    logits = (2.0 * image @ text.T).requires_grad_(True)
    group_logits = {0: 2.0 * _unit(5, 6, 12) @ _unit(5, 6, 13).T,
                    1: (2.0 * _unit(6, 6, 14) @ _unit(6, 6, 15).T).requires_grad_(True)}
    term = reference_fairness_term(logits, group_logits, 3, FairnessConfig(blur=0.5))
    batch_side = torch.stack([logits[i] @ logits[:, i] for i in range(8)])
    expected = 0.0
    for g in (0, 1):
        side = torch.stack([group_logits[g][i] @ group_logits[g][:, i]
                            for i in range(len(group_logits[g]))]).detach()
        expected = expected + _sinkhorn(batch_side, side / side.sum(), 0.5)
    torch.testing.assert_close(term.value, expected)
    assert term.skipped == (2,)
    term.value.backward()
    assert logits.grad.abs().sum() > 0 and group_logits[1].grad is None


# --- against the real fairvlm.ot --------------------------------------------------------------

def test_real_sinkhorn_term_matches_converged_pot_per_group():
    values = torch.cat([torch.linspace(0.2, 1.0, 12), torch.linspace(0.8, 2.5, 10)]).double()
    groups = torch.tensor([0] * 12 + [1] * 10)
    term = fairness_term(values, groups, 2, FairnessConfig(blur=0.1))
    expected = [_converged_sinkhorn(values[groups == g].numpy(), values.numpy(), 0.1)
                for g in (0, 1)]
    np.testing.assert_allclose(term.distances.double().numpy(), expected, rtol=5e-3, atol=1e-5)


def test_real_wasserstein_term_matches_pot_exact_1d():
    generator = torch.Generator().manual_seed(3)
    values = torch.rand(30, generator=generator, dtype=torch.float64) * 3
    groups = torch.arange(30) % 3
    term = fairness_term(values, groups, 3, FairnessConfig(distance="wasserstein"))
    expected = [0.5 * pot.wasserstein_1d(values[groups == g].numpy(), values.numpy(), p=2)
                for g in range(3)]
    np.testing.assert_allclose(term.distances.double().numpy(), expected, rtol=1e-6, atol=1e-9)


def test_real_reference_term_matches_the_public_code():
    logits = (2.0 * _unit(8, 6, 20) @ _unit(8, 6, 21).T).float()
    group_logits = {0: (2.0 * _unit(6, 6, 22) @ _unit(6, 6, 23).T).float()}
    term = reference_fairness_term(logits, group_logits, 1, FairnessConfig(blur=0.5))
    side = reference_statistic(group_logits[0]).double().numpy()
    expected = _converged_sinkhorn(reference_statistic(logits).double().numpy(), side / side.sum(),
                                   0.5)
    np.testing.assert_allclose(float(term.value), expected, rtol=5e-3)
