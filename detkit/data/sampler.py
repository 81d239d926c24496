"""The training order: a shuffle that is a function of (seed, epoch) only, so resumed runs see the same batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["EpochShuffle"]


class EpochShuffle(Sampler[int]):
    """Random order of ``size`` items drawn from ``(seed, epoch)`` alone.

    Lightning calls :meth:`set_epoch` at the start of every training epoch (as it does for a
    ``DistributedSampler``), so a run resumed from a checkpoint at epoch ``e`` visits the images in
    the order the uninterrupted run did; torch's ``RandomSampler`` draws each epoch's order from the
    process's random state, which a checkpoint does not hold. Under DDP Lightning wraps it in its
    distributed sampler wrapper, which splits this order between the processes.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        """Args:
        size: Number of items (the dataset's length).
        seed: Seed of every epoch's order (the data module passes ``seed_everything``'s).
        """
        self.size = int(size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from the next iteration on."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
        return iter(torch.randperm(self.size, generator=generator).tolist())
