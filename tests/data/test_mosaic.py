"""Tests for detkit.data.mosaic (mosaic, MosaicDataset, MosaicSchedule) and MultiScaleCollate."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from detkit.data import DetectionDataModule, MosaicDataset, MosaicSchedule, MultiScaleCollate, ShapesReader, mosaic


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


def test_schedule_turns_mosaic_off_for_the_last_epochs() -> None:
    data = MosaicDataset([_item(8, 8, 1, [], k) for k in range(6)], size=16, prob=1.0)
    trainer = SimpleNamespace(current_epoch=7, max_epochs=10)
    sampler = MosaicSchedule(data, off_last_epochs=2, trainer=lambda: trainer)
    assert sorted(sampler) == list(range(6)) and data.active  # epoch 7 of 10: on
    trainer.current_epoch = 8
    iter(sampler)
    assert not data.active  # epochs 8 and 9: off
    trainer.max_epochs = -1  # unbounded: left as is
    iter(MosaicSchedule(data, 2, lambda: trainer))
    assert not data.active
    iter(MosaicSchedule(data, 2, lambda: None))
    assert not data.active


def test_schedule_turns_mosaic_off_for_the_final_share_of_the_run() -> None:
    """By steps: 10 epochs of 10 steps, off for the last 25 % -> the nearest epoch boundary (75 or
    80 % done, either is nearest to 75 %); by time: the Timer's share decides, whatever the epochs."""
    from lightning.pytorch.callbacks import Timer

    data = MosaicDataset([_item(8, 8, 1, [], k) for k in range(6)], size=16, prob=1.0)
    trainer = SimpleNamespace(current_epoch=0, global_step=0, estimated_stepping_batches=100, callbacks=[])
    sampler = MosaicSchedule(data, 0, lambda: trainer, off_share=0.25)
    active = []
    for epoch in range(10):
        trainer.current_epoch, trainer.global_step = epoch, 10 * epoch
        iter(sampler)
        active.append(data.active)
    assert active == [True] * 7 + [False] * 3
    # A time budget that ends the run first (no epoch limit): 80 % of the time used -> off.
    timer = Timer(duration={"seconds": 100})
    trainer = SimpleNamespace(current_epoch=3, global_step=30, estimated_stepping_batches=float("inf"), callbacks=[timer])
    timer.load_state_dict({"time_elapsed": {"train": 60.0}})
    iter(MosaicSchedule(data, 0, lambda: trainer, off_share=0.25))
    assert data.active  # 60 % + half an epoch (10 %) < 75 %
    timer.load_state_dict({"time_elapsed": {"train": 80.0}})
    iter(MosaicSchedule(data, 0, lambda: trainer, off_share=0.25))
    assert not data.active
    with pytest.raises(ValueError, match="share"):
        MosaicSchedule(data, 0, lambda: trainer, off_share=1.5)


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
    assert isinstance(loader.sampler, MosaicSchedule) and dm.train_size == 96
    images, targets = next(iter(loader))
    assert images.shape[-1] in (64, 96) and all(t["file_name"].startswith("mosaic:") for t in targets)
    assert next(iter(dm.val_dataloader()))[0].shape[-2:] == (64, 64)  # evaluation stays at input_size
