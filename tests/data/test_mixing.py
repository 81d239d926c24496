"""Tests for detkit.data.mixing: MixUp and copy-paste (boxes as pasted crops), and their switch at the end of a run."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from detkit.data import DetectionDataModule, ShapesReader
from detkit.data.mixing import CopyPasteDataset, MixUpDataset, copy_paste, mixup
from detkit.data.mosaic import MosaicDataset, MosaicSwitch
from detkit.data.sampler import EpochShuffle


def _item(h: int, w: int, value: int, boxes: list[list[float]], label: int, name: str = "a.png") -> tuple[np.ndarray, dict[str, Any]]:
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    target = {"boxes": b, "labels": np.full(len(b), label, dtype=np.int64), "iscrowd": np.zeros(len(b), dtype=np.int64),
              "area": (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), "image_id": label, "file_name": name}  # fmt: skip
    return np.full((h, w, 3), value, dtype=np.uint8), target


def test_mixup_blends_pixels_and_keeps_both_box_sets_scaled():
    first = _item(50, 100, 200, [[10, 10, 30, 40]], 0, "a.png")  # scaled x1 onto a 100 canvas
    second = _item(200, 100, 100, [[0, 0, 50, 100]], 1, "b.png")  # scaled x0.5
    image, target = mixup(first, second, size=100, weight=0.75)
    assert image.shape == (100, 100, 3)
    assert image[10, 10, 0] == round(0.75 * 200 + 0.25 * 100)  # both images there
    assert image[80, 20, 0] == round(0.25 * 100)  # below the first image: only the second
    assert image[20, 80, 0] == round(0.75 * 200)  # right of the second: only the first
    np.testing.assert_allclose(target["boxes"], [[10, 10, 30, 40], [0, 0, 25, 50]])
    assert target["labels"].tolist() == [0, 1] and target["area"].tolist() == pytest.approx([600, 1250])
    assert target["image_id"] == 0 and target["file_name"] == "mixup:a.png+b.png"


def test_copy_paste_adds_crops_as_boxes_without_hiding_existing_objects():
    background = _item(100, 100, 0, [[0, 0, 40, 40]], 0)
    source = _item(100, 100, 50, [[10, 10, 30, 20], [50, 50, 70, 90]], 1)
    source[0][10:20, 10:30] = 111  # the first object's pixels
    source[0][50:90, 50:70] = 222
    generator = torch.Generator().manual_seed(0)
    image, target = copy_paste(background, source, generator, max_objects=8, max_overlap=0.0)
    boxes = target["boxes"]
    assert len(boxes) >= 2 and target["labels"][0] == 0 and (target["labels"][1:] == 1).all()
    np.testing.assert_array_equal(boxes[0], [0, 0, 40, 40])
    assert (image[:40, :40] == 0).all()  # max_overlap 0: nothing pasted over the existing box
    for (x1, y1, x2, y2), area in zip(boxes[1:].astype(int), target["area"][1:]):
        crop = image[y1:y2, x1:x2, 0]
        assert (crop == 111).all() or (crop == 222).all()  # each pasted box holds its object
        assert area == pytest.approx((x2 - x1) * (y2 - y1))
    assert len(background[1]["boxes"]) == 1 and (background[0] == 0).all()  # inputs untouched


def test_copy_paste_skips_crowd_boxes():
    source = _item(100, 100, 50, [[10, 10, 30, 20]], 1)
    source[1]["iscrowd"][:] = 1
    image, target = copy_paste(_item(100, 100, 0, [], 0), source, torch.Generator().manual_seed(0))
    assert len(target["boxes"]) == 0 and (image == 0).all()


def test_wrappers_apply_with_their_probability_and_switch_off_together():
    items = [_item(40, 40, 10 * k, [[5, 5, 20, 20]], k, f"{k}.png") for k in range(4)]
    paste, mix = CopyPasteDataset(items, prob=1.0), MixUpDataset(items, size=40, prob=1.0)
    torch.manual_seed(0)
    assert len(paste[0][1]["boxes"]) > 1 and mix[0][1]["file_name"].startswith("mixup:0.png+")
    assert MixUpDataset(items, size=40, prob=0.0)[1][1]["file_name"] == "1.png"
    mosaic = MosaicDataset(items, size=40, prob=1.0)
    trainer = SimpleNamespace(current_epoch=9, global_step=90, estimated_stepping_batches=100, callbacks=[], max_epochs=10)
    MosaicSwitch([paste, mosaic, mix], off_share=0.2).on_train_epoch_start(trainer, None)
    assert not (paste.active or mosaic.active or mix.active)
    assert mix[2][1]["file_name"] == "2.png" and len(paste[2][1]["boxes"]) == 1  # off: items as they are
    with pytest.raises(ValueError, match="prob"):
        MixUpDataset(items, size=40, prob=2.0)


def test_datamodule_stacks_copy_paste_mosaic_and_mixup_and_schedules_them():
    dm = DetectionDataModule(train=ShapesReader(8, seed=0), val=ShapesReader(2, seed=1), input_size=64, batch_size=4,
                             num_workers=0, mosaic_prob=0.5, mixup_prob=0.2, copy_paste_prob=0.3, mosaic_off_share=0.1)  # fmt: skip
    dm.setup("fit")
    chain = dm.train_dataset.dataset
    assert isinstance(chain, MixUpDataset) and isinstance(chain.dataset, MosaicDataset)
    assert isinstance(chain.dataset.dataset, CopyPasteDataset)
    assert dm.switches == [chain.dataset.dataset, chain.dataset, chain]
    [switch] = dm.configure_callbacks()
    assert isinstance(switch, MosaicSwitch) and switch.switches is dm.switches and switch.off_share == 0.1
    assert isinstance(dm.train_dataloader().sampler, EpochShuffle)
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape[0] == 4 and all(t["boxes"].shape[-1] == 4 for t in targets)
    with pytest.raises(ValueError, match="mixup_prob"):
        DetectionDataModule(val=ShapesReader(1), mixup_prob=-0.1)
