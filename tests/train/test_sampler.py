"""Group-aware batch sampler: group presence, coverage, determinism, rank sharding, bad configs."""

from __future__ import annotations

from collections import Counter
from itertools import chain

import numpy as np
import pytest
from torch.utils.data import DataLoader

from fairvlm.errors import ConfigError
from fairvlm.train.sampler import GroupAwareBatchSampler, batches_per_epoch

# Codes like FairVLMed's language attribute: a large group and three small ones (-1 unknown).
SIZES = {0: 300, 1: 20, 2: 9, -1: 5}
CODES = np.random.default_rng(1).permutation(
    np.concatenate([np.full(size, code) for code, size in SIZES.items()]))


def _sampler(**options) -> GroupAwareBatchSampler:
    return GroupAwareBatchSampler(CODES, options.pop("batch_size", 16), **options)


def test_every_batch_holds_k_of_every_group_and_every_pair_appears():
    sampler = _sampler(min_per_group=3)
    batches = sampler.global_batches(0)
    assert batches.shape == (len(sampler), 16)
    for batch in batches:
        counts = Counter(CODES[batch].tolist())
        assert all(counts[code] >= 3 for code in SIZES)
    assert set(batches.ravel().tolist()) == set(range(len(CODES)))
    # the large group is drawn about once: its quota plus the pool, never more than padding
    drawn = Counter(batches.ravel().tolist())
    large = np.flatnonzero(CODES == 0)
    assert np.mean([drawn[i] for i in large]) < 1.1


def test_number_of_batches_covers_every_pair():
    # Hand check, FairVLMed language sizes, B = 32, k = 4: n = 321 needs
    # 7000 + 2 * (1284 - 210) + (1284 - 140) = 10292 > 321 * 32 = 10272 slots; n = 322 gives
    # 7000 + 2 * (1288 - 210) + (1288 - 140) = 10304 = 322 * 32.
    assert batches_per_epoch([6440, 210, 210, 140], 32, 4) == 322
    assert batches_per_epoch([100], 32, 0) == 4  # plain: ceil(100 / 32)


def test_same_seed_and_epoch_repeat_other_epochs_and_seeds_differ():
    first, again = _sampler(seed=3), _sampler(seed=3)
    first.set_epoch(2)
    again.set_epoch(2)
    assert list(first) == list(again)
    again.set_epoch(3)
    assert list(first) != list(again)
    other_seed = _sampler(seed=4)
    other_seed.set_epoch(2)
    assert list(first) != list(other_seed)


def test_ranks_get_disjoint_equal_slices_that_make_the_global_batch():
    world = 4
    ranks = [_sampler(rank=r, world_size=world, seed=5) for r in range(world)]
    for sampler in ranks:
        sampler.set_epoch(1)
    per_rank = [list(sampler) for sampler in ranks]
    assert len({len(batches) for batches in per_rank}) == 1
    global_batches = ranks[0].global_batches(1)
    for step, batch in enumerate(global_batches):
        slices = [per_rank[r][step] for r in range(world)]
        assert all(len(part) == 4 for part in slices)
        assert list(chain(*slices)) == batch.tolist()  # slots partition the global batch
    assert set(chain(*chain(*per_rank))) == set(range(len(CODES)))


def test_min_per_group_zero_is_a_plain_shuffled_epoch():
    sampler = _sampler(min_per_group=0, batch_size=32)
    batches = sampler.global_batches(0)
    assert len(sampler) == 11  # ceil(334 / 32)
    assert set(batches.ravel().tolist()) == set(range(len(CODES)))


def test_works_as_a_dataloader_batch_sampler():
    loader = DataLoader(list(range(len(CODES))), batch_sampler=_sampler(min_per_group=2))
    batches = list(loader)
    assert len(batches) == len(loader) and all(len(b) == 16 for b in batches)


def test_k_larger_than_a_group_names_the_group_and_its_size():
    with pytest.raises(ConfigError, match=r"'unknown' \(code -1\), which has 5 training") as err:
        _sampler(min_per_group=6, batch_size=32, group_names={-1: "unknown"})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("options", "message"), [
    ({"min_per_group": 5, "batch_size": 16}, "does not fit in batch_size 16"),
    ({"batch_size": 18, "world_size": 4}, "multiple of the number of processes"),
    ({"rank": 2, "world_size": 2}, "rank 2"),
    ({"min_per_group": -1}, "min_per_group -1"),
])
def test_bad_sampler_configs(options, message):
    with pytest.raises(ConfigError, match=message):
        _sampler(**options)
