"""Loader workers leave what they inherit from the main process to the garbage collector's permanent
generation (no copy of every Python object of the main process per worker), and keep Lightning's seeding."""

from __future__ import annotations

import gc

import torch
from torch.utils.data import DataLoader, Dataset

from detkit.data import DetectionDataModule, ShapesReader
from detkit.data.datamodule import freeze_inherited_objects


class _WorkerState(Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[int, int]:
        return gc.get_freeze_count(), torch.initial_seed()


def _in_worker(**kwargs) -> tuple[int, int]:
    loader = DataLoader(_WorkerState(), num_workers=1, batch_size=None, generator=torch.Generator().manual_seed(3), **kwargs)
    return next(iter(loader))


def test_workers_freeze_what_they_inherit_and_keep_lightnings_seeding(monkeypatch) -> None:
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)  # no seed_everything(workers=True) before
    frozen, seed = _in_worker(worker_init_fn=freeze_inherited_objects)
    assert frozen > 1000  # the modules, classes and functions of the main process
    plain_frozen, plain_seed = _in_worker()
    assert plain_frozen == gc.get_freeze_count() and plain_seed == seed  # nothing else changes
    monkeypatch.setenv("PL_SEED_WORKERS", "1")  # seed_everything(workers=True): Lightning's worker seeding
    _, lightning_seed = _in_worker(worker_init_fn=freeze_inherited_objects)
    assert lightning_seed != seed


def test_every_loader_of_the_datamodule_uses_it() -> None:
    reader = ShapesReader(4, seed=0)
    data = DetectionDataModule(train=reader, val=reader, test=reader, input_size=64, num_workers=0)
    data.setup()
    loaders = [data.train_dataloader(), data.val_dataloader(), data.test_dataloader(), data.predict_dataloader()]
    assert all(loader.worker_init_fn is freeze_inherited_objects for loader in loaders)
