"""Tests for detkit.training.callbacks.Checkpoint: ``last.ckpt`` holds the last step whether or not the metric improved."""

import torch
from tiny import cpu_trainer, shapes_loader, tiny_module

from detkit.training.callbacks import Checkpoint


def _checkpoint(**kwargs) -> Checkpoint:
    options = {"monitor": "val/map", "mode": "max", "filename": "best", "save_last": True,
               "enable_version_counter": False, "auto_insert_metric_name": False, **kwargs}  # fmt: skip
    return Checkpoint(**options)


def _step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


def test_last_checkpoint_follows_training_when_the_metric_stops_improving(tmp_path):
    # lr 0: val/map never improves after the first epoch, so only epoch 1 is a "best".
    module = tiny_module(lr=0.0)
    loader = shapes_loader(num_images=4, batch_size=2)
    trainer = cpu_trainer(tmp_path, callbacks=(_checkpoint(),), max_epochs=3, enable_checkpointing=True)
    trainer.fit(module, loader, loader)
    assert _step(tmp_path / "checkpoints" / "best.ckpt") == 2
    assert _step(tmp_path / "checkpoints" / "last.ckpt") == 6  # Lightning 2.6 alone leaves 2 here


def test_last_checkpoint_every_epoch_without_validation(tmp_path):
    module = tiny_module(lr=0.0)
    trainer = cpu_trainer(tmp_path, callbacks=(_checkpoint(monitor=None, filename="epoch{epoch}"),), max_epochs=2,
                          limit_val_batches=0)  # fmt: skip
    trainer.fit(module, shapes_loader(num_images=4, batch_size=2))
    assert _step(tmp_path / "checkpoints" / "last.ckpt") == 4


def test_last_checkpoint_every_n_train_steps_without_a_better_metric(tmp_path):
    module = tiny_module(lr=0.0)
    loader = shapes_loader(num_images=6, batch_size=2)  # 3 steps per epoch
    checkpoint = _checkpoint(every_n_train_steps=2, save_on_train_epoch_end=False)
    trainer = cpu_trainer(tmp_path, callbacks=(checkpoint,), max_epochs=2, check_val_every_n_epoch=1)
    trainer.fit(module, loader, loader)
    assert _step(tmp_path / "checkpoints" / "last.ckpt") == 6
