"""Tests for detkit.data.sampler.EpochShuffle: the training order depends on (seed, epoch) only."""

from detkit.data.sampler import EpochShuffle


def _order(seed: int, epoch: int, size: int = 50) -> list[int]:
    sampler = EpochShuffle(size, seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_each_epoch_is_a_permutation_drawn_from_seed_and_epoch_alone():
    assert sorted(_order(0, 3)) == list(range(50))
    assert _order(0, 3) == _order(0, 3)  # a new sampler (a resumed run) repeats the epoch
    assert _order(0, 3) != _order(0, 4) and _order(0, 3) != _order(1, 3)
    sampler = EpochShuffle(50, 0)
    first, again = list(sampler), list(sampler)
    assert first == again == _order(0, 0)  # iterating does not advance it: only set_epoch does
