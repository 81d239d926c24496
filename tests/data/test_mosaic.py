"""Tests for detkit.data.mosaic (mosaic, MosaicDataset, MosaicSwitch) and MultiScaleCollate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer

from detkit.data import DetectionDataModule, MosaicDataset, MosaicSwitch, MultiScaleCollate, ShapesReader, mosaic


def _item(h: int, w: int, value: int, boxes: list[list[float]], image_id: int) -> tuple[np.ndarray, dict[str, Any]]:
    n = len(boxes)
    b = np.asarray(boxes, dtype=np.float32).reshape(n, 4)
    target = {"boxes": b, "labels": np.full(n, image_id, dtype=np.int64), "iscrowd": np.zeros(n, dtype=np.int64),
              "area": (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), "image_id": image_id, "file_name": f"{image_id}.png"}  # fmt: skip
    return np.full((h, w, 3), value, dtype=np.uint8), target


def test_mosaic_places_tiles_and_boxes_by_hand() -> None:
    items = [
        _item(50, 100, 10, [[70, 10, 90, 40], [0, 0, 50, 20]], 0),  # r = 1, bottom-right corner at (40, 60)
        _item(100, 100, 20, [[0, 40, 30, 100], [50, 0, 100, 30]], 1),  # r = 1, bottom-left corner at centre
        _item(40, 40, 30, [[20, 0, 40, 8]], 2),  # r = 2.5 -> 100x100, top-right corner at centre
        _item(100, 50, 40, [[0, 0, 50, 100]], 3),  # r = 1, top-left corner at centre
    ]
    image, target = mosaic(items, 100, (40, 60))
    assert image.shape == (100, 100, 3)
    # tile 0 at x0=-60, y0=10: box 1 -> [10, 20, 30, 50]; box 2 -> [-60, 10, -10, 30]: off canvas, dropped
    # tile 1 at x0=40, y0=-40: [40, 0, 70, 60]; second box entirely above the canvas, dropped
    # tile 2 at x0=-60, y0=60: [50, 0, 100, 20]*1 -> [-10, 60, 40, 80] -> clipped [0, 60, 40, 80] (80 % visible)
    # tile 3 at x0=40, y0=60: [40, 60, 90, 160] -> [40, 60, 90, 100] (40 % visible >= 20 %)
    expected = [[10, 20, 30, 50], [40, 0, 70, 60], [0, 60, 40, 80], [40, 60, 90, 100]]
    np.testing.assert_allclose(target["boxes"], expected, atol=1e-4)
    assert target["labels"].tolist() == [0, 1, 2, 3] and target["iscrowd"].tolist() == [0] * 4
    np.testing.assert_allclose(target["area"], [600, 1800, 160 * 6.25, 5000])  # scaled with the tile
    assert target["image_id"] == 0 and target["file_name"] == "mosaic:0.png+1.png+2.png+3.png"
    for (y, x), value in {(30, 20): 10, (5, 20): 0, (30, 70): 20, (80, 20): 30, (80, 70): 40, (80, 95): 0}.items():
        assert image[y, x, 0] == value, (y, x)


def test_mosaic_dataset_probability_and_switch() -> None:
    items = [_item(20, 30, 50 + k, [[1, 1, 10, 10]], k) for k in range(5)]
    always = MosaicDataset(items, size=64, prob=1.0)
    image, target = always[2]
    assert image.shape == (64, 64, 3) and target["file_name"].startswith("mosaic:2.png+")
    always.active = False
    assert always[2][0].shape == (20, 30, 3)
    assert MosaicDataset(items, size=64, prob=0.0)[1][1]["file_name"] == "1.png"


def test_switch_turns_mosaic_off_for_the_last_epochs() -> None:
    data = MosaicDataset([_item(8, 8, 1, [], k) for k in range(6)], size=16, prob=1.0)
    switch = MosaicSwitch([data], off_last_epochs=2)
    trainer = SimpleNamespace(current_epoch=7, max_epochs=10)
    switch.on_train_epoch_start(trainer, None)
    assert data.active  # epoch 7 of 10: on
    trainer.current_epoch = 8
    switch.on_train_epoch_start(trainer, None)
    assert not data.active  # epochs 8 and 9: off
    trainer.max_epochs = -1  # unbounded: left as is
    switch.on_train_epoch_start(trainer, None)
    assert not data.active
    # A new run's first epoch is set before its loader starts: on, or off when the run is all final epochs.
    switch.setup(SimpleNamespace(current_epoch=0, max_epochs=10), None, "fit")
    assert data.active
    switch.setup(SimpleNamespace(current_epoch=0, max_epochs=2), None, "fit")
    assert not data.active
    switch.setup(SimpleNamespace(current_epoch=0, max_epochs=10), None, "validate")
    assert not data.active  # only fit switches


def test_switch_turns_mosaic_off_for_the_final_share_of_the_run() -> None:
    """By steps: 10 epochs of 10 steps, off for the last 25 % -> the nearest epoch boundary (75 or
    80 % done, either is nearest to 75 %); by time: the Timer's share decides, whatever the epochs."""
    from lightning.pytorch.callbacks import Timer

    data = MosaicDataset([_item(8, 8, 1, [], k) for k in range(6)], size=16, prob=1.0)
    trainer = SimpleNamespace(current_epoch=0, global_step=0, estimated_stepping_batches=100, callbacks=[], max_epochs=10)
    switch = MosaicSwitch([data], off_share=0.25)
    active = []
    for epoch in range(10):
        trainer.current_epoch, trainer.global_step = epoch, 10 * epoch
        switch.on_train_epoch_start(trainer, None)
        active.append(data.active)
    assert active == [True] * 7 + [False] * 3
    # A time budget that ends the run first (no epoch limit): 80 % of the time used -> off.
    timer = Timer(duration={"seconds": 100})
    trainer = SimpleNamespace(current_epoch=3, global_step=30, estimated_stepping_batches=float("inf"), callbacks=[timer],
                              max_epochs=-1)  # fmt: skip
    timer.load_state_dict({"time_elapsed": {"train": 60.0}})
    switch.on_train_epoch_start(trainer, None)
    assert data.active  # 60 % + half an epoch (10 %) < 75 %
    timer.load_state_dict({"time_elapsed": {"train": 80.0}})
    switch.on_train_epoch_start(trainer, None)
    assert not data.active
    for bad in ({"off_share": 1.5}, {"off_last_epochs": -1}, {"off_share": 0.2, "off_last_epochs": 2}):
        with pytest.raises(ValueError, match="off"):
            MosaicSwitch([data], **bad)


def test_switch_state_travels_in_the_checkpoint() -> None:
    """A resumed run starts with the value in force when the checkpoint was written, before its loader starts."""
    data = MosaicDataset([_item(8, 8, 1, [], k) for k in range(6)], size=16, prob=1.0)
    switch = MosaicSwitch([data], off_share=0.2)
    assert switch.state_dict() == {"active": None}
    switch.switch(False)
    resumed_data = MosaicDataset([_item(8, 8, 1, [], k) for k in range(6)], size=16, prob=1.0)
    resumed = MosaicSwitch([resumed_data], off_share=0.2)
    resumed.load_state_dict(switch.state_dict())
    assert not resumed_data.active and resumed.active is False
    resumed.load_state_dict({"active": None})  # never switched: left as is
    assert not resumed_data.active


def test_multiscale_collate_resizes_batch_boxes_and_scale() -> None:
    batch = [
        (torch.full((3, 64, 64), 0.4), {"boxes": torch.tensor([[8.0, 16, 32, 64]]), "scale": torch.tensor([0.5, 0.5])}),
        (torch.rand(3, 64, 64), {"boxes": torch.zeros(0, 4), "scale": torch.tensor([2.0, 2.0])}),
    ]
    images, targets = MultiScaleCollate([32], train_size=64)(batch)
    assert images.shape == (2, 3, 32, 32)
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[4.0, 8, 16, 32]]))
    assert targets[0]["scale"].tolist() == [0.25, 0.25] and targets[1]["scale"].tolist() == [1.0, 1.0]
    torch.testing.assert_close(images[0], torch.full((3, 32, 32), 0.4), atol=1e-5, rtol=0)
    assert 0 <= images.min() and images.max() <= 1
    torch.manual_seed(0)
    drawn = {MultiScaleCollate([32, 64])(batch)[0].shape[-1] for _ in range(30)}
    assert drawn == {32, 64}


def test_multiscale_collate_resizes_through_resize_image_with_exact_per_axis_factors() -> None:
    from detkit.ops.letterbox import resize_image

    image = torch.rand(3, 60, 45)  # e.g. after a config crop: not square
    boxes = torch.tensor([[0.0, 0, 45, 60], [10, 20, 30, 40]])
    out, targets = MultiScaleCollate([96], pad_multiple=32, train_size=128)([(image, {"boxes": boxes, "scale": torch.ones(2)})])
    # 60 x 45 times 0.75 -> 45 x round(33.75) = 34: padded to 64 x 64
    assert out.shape == (1, 3, 64, 64) and not out[0, :, 45:].any() and not out[0, :, :, 34:].any()
    expected = resize_image(image.permute(1, 2, 0).numpy(), 45, 34).clip(0, 1)
    torch.testing.assert_close(out[0, :, :45, :34], torch.from_numpy(expected).permute(2, 0, 1))
    torch.testing.assert_close(targets[0]["scale"], torch.tensor([34 / 45, 0.75]))
    torch.testing.assert_close(targets[0]["boxes"][0], torch.tensor([0.0, 0, 34, 45]))
    with pytest.raises(ValueError, match="positive"):
        MultiScaleCollate([0, 32])


def test_datamodule_with_mosaic_multiscale_and_heavy_preset() -> None:
    dm = DetectionDataModule(train=ShapesReader(8, seed=0), val=ShapesReader(2, seed=1), input_size=64, batch_size=4,
                             num_workers=0, augmentations="heavy", mosaic_prob=1.0, mosaic_off_last_epochs=1,
                             multiscale_sizes=[64, 96])  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    [switch] = dm.configure_callbacks()
    assert isinstance(switch, MosaicSwitch) and switch.switches is dm.switches and switch.off_last_epochs == 1
    assert dm.train_size == 96
    images, targets = next(iter(loader))
    assert images.shape[-1] in (64, 96) and all(t["file_name"].startswith("mosaic:") for t in targets)
    assert next(iter(dm.val_dataloader()))[0].shape[-2:] == (64, 64)  # evaluation stays at input_size


class _RecordMosaics(LightningModule):
    """Trains nothing; records, per epoch, whether each training item was a mosaic."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: dict[int, list[bool]] = {}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        self.seen.setdefault(self.current_epoch, []).extend(t["file_name"].startswith("mosaic:") for t in targets)
        return self.weight * images.mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _mosaic_data(**options: Any) -> DetectionDataModule:
    options = {"num_workers": 2, "mosaic_prob": 1.0, **options}
    return DetectionDataModule(train=ShapesReader(8, seed=0), val=ShapesReader(2, seed=1), input_size=32, batch_size=4, **options)


def _fit(root: Path, dm: DetectionDataModule, max_epochs: int, ckpt_path: Path | None = None) -> tuple[Trainer, dict[int, set[bool]]]:
    """Fit epochs of 2 steps; per epoch, whether its items were mosaics."""
    module = _RecordMosaics()
    trainer = Trainer(accelerator="cpu", default_root_dir=root, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                      max_epochs=max_epochs, callbacks=dm.configure_callbacks())  # fmt: skip
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, {epoch: set(flags) for epoch, flags in module.seen.items()}


def test_switch_turns_mosaic_off_for_the_final_share_of_a_real_fit_with_persistent_workers(tmp_path) -> None:
    """Off for the last 40 % of 4 epochs: epochs 0-1 all mosaics, 2-3 none, though the two persistent
    workers were started before the first epoch. Resumed to 5 epochs, epoch 4 is off from its first
    item: its loader, and the workers' prefetching, start before any epoch hook, so the switch's
    value comes from the checkpoint."""
    dm = _mosaic_data(mosaic_off_share=0.4)
    trainer, seen = _fit(tmp_path, dm, max_epochs=4)
    assert trainer.train_dataloader.persistent_workers and trainer.train_dataloader.num_workers == 2
    assert seen == {0: {True}, 1: {True}, 2: {False}, 3: {False}}
    trainer.save_checkpoint(tmp_path / "end.ckpt")
    resumed = _mosaic_data(mosaic_off_share=0.4)  # new wrappers: on until the checkpoint's state arrives
    assert _fit(tmp_path, resumed, max_epochs=5, ckpt_path=tmp_path / "end.ckpt")[1] == {4: {False}}


def test_datamodule_asks_for_the_switch_only_when_configured_and_warns_without_it() -> None:
    assert _mosaic_data().configure_callbacks() == []
    assert _mosaic_data(mosaic_prob=0.0, mosaic_off_share=0.4).configure_callbacks() == []
    dm = _mosaic_data(num_workers=0, mosaic_off_last_epochs=1)
    dm.setup("fit")
    dm.trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match="no MosaicSwitch"):
        dm.train_dataloader()
