"""DBPM loss memory: flags, scores and weights against a hand-computed example; persistence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from gloo_workers import all_reduce_memory

from fairvlm.errors import ConfigError, DataError
from fairvlm.mining import DBPMConfig, LossMemory, flagged_pairs

IDS = ["a", "b", "c", "d", "e", "f", "g", "h"]

# Hand-computed example, E = 4 epochs, beta_np = beta_fp = 1, judged at the start of epoch 2.
# Epoch weights w_0 = 1/4, w_1 = 2/4, so m_i = (l0 + 2 l1) / 3 over the epochs a pair was seen:
#   a: (0 + 0) / 3 = 0     b, d, e: 2     c: (3 + 2 * 1.5) / 3 = 2 (its plain mean is 2.25)
#   f: 4                   g: seen in epoch 1 only, m = 2      h: never seen, not judged
# mu = 2 and sigma^2 = (4 + 4) / 7 over the seven judged pairs (population variance), so
# noisy: m <= 2 - sqrt(8/7) -> a;  faulty: m >= 2 + sqrt(8/7) -> f.
EPOCH0 = {"a": 0.0, "b": 2.0, "c": 3.0, "d": 2.0, "e": 2.0, "f": 4.0}
EPOCH1 = {"g": 2.0, "f": 4.0, "e": 2.0, "d": 2.0, "c": 1.5, "b": 2.0, "a": 0.0}  # other order
SIGMA = math.sqrt(8 / 7)


def _example(mode: str = "reweight") -> LossMemory:
    memory = LossMemory(IDS, epochs=4, config=DBPMConfig(mode=mode, beta_np=1.0, beta_fp=1.0))
    for epoch, losses in enumerate((EPOCH0, EPOCH1)):
        memory.record(list(losses), torch.tensor(list(losses.values())), epoch)
    return memory


def test_flags_scores_and_statistics_match_the_hand_computation():
    memory = _example()
    assert memory.begin_epoch(1) is None  # warm-up
    verdict = memory.begin_epoch(2)
    np.testing.assert_allclose(verdict.score, [0, 2, 2, 2, 2, 4, 2, np.nan])
    assert verdict.mu == pytest.approx(2.0)
    assert verdict.sigma == pytest.approx(SIGMA)
    assert verdict.noisy.tolist() == [True] + [False] * 7
    assert verdict.faulty.tolist() == [False] * 5 + [True, False, False]
    assert memory.mu[2] == pytest.approx(2.0) and np.isnan(memory.mu[:2]).all()
    assert memory.flagged(["f", "b", "a"]).tolist() == [True, False, True]


def test_weights_match_the_bounded_kernel_for_flagged_pairs_only():
    memory = _example()
    memory.begin_epoch(2)
    losses = torch.tensor([1.0, 4.0, 3.0, 9.0], requires_grad=True)
    weights = memory.weights(["a", "f", "b", "h"], losses)
    # w = exp(-(l - mu)^2 / (2 sigma^2)) with 2 sigma^2 = 16/7: a (l=1) -> exp(-7/16),
    # f (l=4) -> exp(-4 * 7/16); b is not flagged, h has no history.
    expected = torch.tensor([math.exp(-7 / 16), math.exp(-28 / 16), 1.0, 1.0])
    torch.testing.assert_close(weights, expected)
    assert not weights.requires_grad


@pytest.mark.parametrize(("mode", "expected"), [("drop", [0.0, 0.0, 1.0]),
                                                ("off", [1.0, 1.0, 1.0])])
def test_drop_and_off_modes(mode, expected):
    memory = _example(mode)
    verdict = memory.begin_epoch(2)
    assert verdict.flagged.sum() == 2  # off still judges, so the browser can show the flags
    assert memory.weights(["a", "f", "b"], torch.tensor([1.0, 4.0, 3.0])).tolist() == expected


def test_weights_before_warmup_are_one():
    memory = _example()
    memory.begin_epoch(1)
    assert memory.weights(["a", "f"], torch.tensor([0.0, 9.0])).tolist() == [1.0, 1.0]


def test_weight_never_exceeds_one_where_dbpm_density_does():
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(200)]
    memory = LossMemory(ids, epochs=3, config=DBPMConfig(beta_np=0.5, beta_fp=0.5, warmup=1))
    memory.record(ids, rng.normal(1.0, 0.05, size=200), 0)  # small sigma
    verdict = memory.begin_epoch(1)
    losses = torch.from_numpy(rng.normal(1.0, 0.3, size=200))
    weights = memory.weights(ids, losses)
    density = torch.exp(-(losses - verdict.mu) ** 2 / (2 * verdict.sigma**2)) / (
        verdict.sigma * math.sqrt(2 * math.pi))
    flagged = torch.from_numpy(verdict.flagged)
    assert flagged.any() and (density[flagged] > 1).any()  # the original weight up-weights
    assert ((weights >= 0) & (weights <= 1)).all()


def test_history_is_per_sample_id_and_averages_repeats():
    memory = LossMemory(["x", "y"], epochs=2)
    memory.record(["x", "y", "x"], np.array([1.0, 5.0, 3.0]), 0)
    memory.record(["y"], np.array([7.0]), 1)
    np.testing.assert_allclose(memory.history, [[2.0, np.nan], [5.0, 7.0]])
    assert memory.loss_count.tolist() == [[2, 0], [1, 1]]
    assert memory.epochs_recorded == 2
    with pytest.raises(KeyError):
        memory.record(["z"], np.array([1.0]), 0)


def test_discard_from_forgets_later_epochs():
    memory = _example()
    memory.begin_epoch(2)
    memory.discard_from(1)
    assert memory.epochs_recorded == 1
    assert np.isnan(memory.mu).all() and not memory.faulty.any()


def test_flagged_pairs_export_is_cleanlab_style():
    memory = _example()
    memory.begin_epoch(2)
    table = flagged_pairs(memory, epoch=2)
    assert table["id"].tolist() == ["a", "f"]  # |z| = 2 / sigma for both; stable order
    z = 2 / SIGMA
    row_a, row_f = table.iloc[0], table.iloc[1]
    assert bool(row_a["is_noisy_issue"]) and not bool(row_a["is_faulty_issue"])
    assert row_a["noisy_score"] == pytest.approx(z) and row_a["faulty_score"] == pytest.approx(-z)
    assert bool(row_f["is_faulty_issue"]) and row_f["faulty_score"] == pytest.approx(z)
    assert row_f["faulty_first_epoch"] == 2 and row_a["noisy_first_epoch"] == 2
    assert table["faulty_first_epoch"].isna().tolist() == [True, False]
    everything = flagged_pairs(memory, epoch=2, include_unflagged=True)
    assert len(everything) == 7  # h has no history


def test_flagged_pairs_defaults_to_the_whole_history():
    memory = _example()  # epochs 0 and 1 recorded, nothing judged during training
    table = flagged_pairs(memory)
    assert table["id"].tolist() == ["a", "f"]
    assert table["noisy_first_epoch"].tolist()[0] == 2  # the verdict after epoch 1
    assert table["faulty_first_epoch"].tolist()[1] == 2


def test_save_load_roundtrip(tmp_path):
    memory = _example("drop")
    memory.begin_epoch(2)
    memory.record(["a", "b"], np.array([0.5, 2.5]), 2)
    path = tmp_path / "memory.npz"
    memory.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.npz"]  # no temp left
    loaded = LossMemory.load(path)
    assert loaded.ids.tolist() == IDS and loaded.config == memory.config
    np.testing.assert_allclose(loaded.history, memory.history)
    assert loaded.loss_count.tolist() == memory.loss_count.tolist()
    np.testing.assert_allclose(loaded.score, memory.score)
    assert (loaded.noisy == memory.noisy).all() and (loaded.faulty == memory.faulty).all()
    np.testing.assert_allclose(loaded.sigma, memory.sigma)
    with np.load(path) as raw:
        assert raw["faulty_first_epoch"].tolist() == [-1] * 5 + [2, -1, -1]
    loaded.begin_epoch(2)
    assert loaded.weights(["a", "b"], torch.tensor([1.0, 1.0])).tolist() == [0.0, 1.0]


def test_load_names_a_missing_field(tmp_path):
    path = tmp_path / "memory.npz"
    np.savez(path, ids=np.array(["a"]))
    with pytest.raises(DataError, match="field loss_history"):
        LossMemory.load(path)
    with pytest.raises(DataError, match="no DBPM memory"):
        LossMemory.load(tmp_path / "absent.npz")


def test_merge_combines_ranks_by_sample_id():
    whole = _example()
    rank0 = LossMemory(IDS, epochs=4, config=whole.config)
    rank1 = LossMemory(IDS[::-1], epochs=4, config=whole.config)  # different row order
    for epoch, losses in enumerate((EPOCH0, EPOCH1)):
        ids = list(losses)
        rank0.record(ids[::2], np.array(list(losses.values())[::2]), epoch)
        rank1.record(ids[1::2], np.array(list(losses.values())[1::2]), epoch)
    rank0.merge(rank1)
    np.testing.assert_allclose(rank0.history, whole.history)


def test_all_reduce_epoch_gathers_two_gloo_ranks(tmp_path):
    mp.spawn(all_reduce_memory, args=(str(tmp_path),), nprocs=2)
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}.npy"),
                                   [[1.0, np.nan], [3.0, np.nan], [6.0, np.nan]])


@pytest.mark.parametrize(("changes", "field"), [
    ({"beta_np": 0.0}, "beta_np"), ({"beta_fp": -1.0}, "beta_fp"),
    ({"mode": "skip"}, "mode"), ({"warmup": 0}, "warmup"),
])
def test_bad_dbpm_config_is_a_one_line_config_error(changes, field):
    with pytest.raises(ConfigError, match=field) as caught:
        DBPMConfig(**changes)
    assert "\n" not in str(caught.value)
