"""Tests for detkit.data.transforms: eval letterbox, train augmentation and TransformedDataset."""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from detkit.data.readers.shapes import ShapesReader
from detkit.data.transforms import EvalTransform, TrainTransform, TransformedDataset
from detkit.ops.letterbox import Letterbox


class ListDataset(torch.utils.data.Dataset):
    """Fixed ``(image, target)`` items."""

    def __init__(self, items: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        return self.items[index]


def _item(height: int, width: int, boxes: list[list[float]], value: int = 200) -> tuple[np.ndarray, dict[str, Any]]:
    n = len(boxes)
    target = {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(n, 4),
        "labels": np.arange(n, dtype=np.int64) + 1,
        "iscrowd": np.zeros(n, dtype=np.int64),
        "area": np.arange(n, dtype=np.float32) * 10 + 5,
        "image_id": 17,
        "file_name": "x.png",
    }
    return np.full((height, width, 3), value, dtype=np.uint8), target


def test_eval_letterbox_maps_boxes_exactly_and_round_trips() -> None:
    # 200 wide x 100 high, size 100 -> scale 0.5 -> 100 x 50, padded at the bottom to 100 x 100.
    item = _item(100, 200, [[10, 20, 110, 60], [150, 0, 200, 100]])
    ds = TransformedDataset(ListDataset([item]), EvalTransform(100, pad_multiple=1))
    image, target = ds[0]
    assert image.shape == (3, 100, 100) and image.dtype == torch.float32
    torch.testing.assert_close(image[:, :50], torch.full((3, 50, 100), 200 / 255))
    assert (image[:, 50:] == 0).all()  # bottom padding
    torch.testing.assert_close(target["boxes"], torch.tensor([[5.0, 10, 55, 30], [75, 0, 100, 50]]), atol=1e-4, rtol=0)
    assert target["scale"].dtype == torch.float32 and target["scale"].tolist() == [0.5, 0.5]
    assert target["orig_size"].tolist() == [100, 200] and target["orig_size"].dtype == torch.int64
    original = Letterbox.to_original(target["boxes"], target["scale"], target["orig_size"])
    torch.testing.assert_close(original, torch.tensor([[10.0, 20, 110, 60], [150, 0, 200, 100]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(target["orig_boxes"], torch.tensor([[10.0, 20, 110, 60], [150, 0, 200, 100]]), rtol=0, atol=0)
    assert target["labels"].tolist() == [1, 2] and target["labels"].dtype == torch.int64
    assert target["area"].tolist() == [5.0, 15.0]  # original-pixel area, untouched
    assert target["image_id"] == 17 and target["file_name"] == "x.png"


def test_eval_letterbox_tall_image_pads_right() -> None:
    # 60 wide x 120 high, size 240 -> scale 2 -> 120 x 240, padded on the right.
    ds = TransformedDataset(ListDataset([_item(120, 60, [[6, 12, 30, 100]])]), EvalTransform(240, pad_multiple=16))
    image, target = ds[0]
    assert image.shape == (3, 240, 240)
    assert (image[:, :, 120:] == 0).all() and (image[:, :, :120] > 0).all()
    torch.testing.assert_close(target["boxes"], torch.tensor([[12.0, 24, 60, 200]]), atol=1e-4, rtol=0)
    assert target["scale"].tolist() == [2.0, 2.0]


def test_images_without_boxes() -> None:
    for transform in (EvalTransform(64), TrainTransform(64)):
        image, target = TransformedDataset(ListDataset([_item(30, 50, [])]), transform)[0]
        assert image.shape == (3, 64, 64)
        assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
        for key, dtype in (("labels", torch.int64), ("iscrowd", torch.int64), ("area", torch.float32)):
            assert target[key].shape == (0,) and target[key].dtype == dtype


def test_train_transform_keeps_boxes_valid_and_inside() -> None:
    shapes = ShapesReader(40, seed=4)
    ds = TransformedDataset(shapes, TrainTransform(128, scale_range=(0.5, 1.8)))
    for i in range(len(ds)):
        image, target = ds[i]
        assert image.shape == (3, 128, 128) and 0 <= image.min() and image.max() <= 1
        boxes = target["boxes"]
        n = len(boxes)
        assert target["labels"].shape == (n,) and target["iscrowd"].shape == (n,) and target["area"].shape == (n,)
        assert (boxes >= 0).all() and (boxes <= 128).all()
        assert (boxes[:, 2] - boxes[:, 0] >= 1).all() and (boxes[:, 3] - boxes[:, 1] >= 1).all()
        # surviving boxes keep their own label and original area
        orig = shapes[i][1]
        pairs = set(zip(orig["labels"].tolist(), orig["area"].tolist()))
        assert set(zip(target["labels"].tolist(), target["area"].tolist())) <= pairs


def test_hflip_maps_box_to_hand_computed_values() -> None:
    item = _item(100, 100, [[10, 20, 30, 60]])
    item[0][:, :50] = 0  # left half black, right half grey
    flipped = TrainTransform(100, hflip_prob=1.0, scale_range=(1.0, 1.0), color_jitter=0.0)
    image, target = TransformedDataset(ListDataset([item]), flipped)[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[70.0, 20, 90, 60]]), atol=1e-4, rtol=0)
    expected = torch.from_numpy(item[0][:, ::-1].copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, expected)
    unflipped = TrainTransform(100, hflip_prob=0.0, scale_range=(1.0, 1.0), color_jitter=0.0)
    _, target = TransformedDataset(ListDataset([item]), unflipped)[0]
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 20, 30, 60]]), atol=1e-4, rtol=0)


def test_train_augmentation_is_random_but_follows_torch_seed() -> None:
    def run() -> list[torch.Tensor]:
        ds = TransformedDataset(ShapesReader(1, seed=0), TrainTransform(96))
        return [ds[0][0] for _ in range(4)]

    torch.manual_seed(123)
    first = run()
    torch.manual_seed(123)
    second = run()
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
    assert not all(torch.equal(first[0], other) for other in first[1:])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0},
        {"size": 64, "scale_range": (1.5, 1.0)},
        {"size": 64, "hflip_prob": 2.0},
        {"size": 64, "color_jitter": -1},
    ],
)
def test_train_transforms_reject_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TrainTransform(**kwargs)


def test_eval_letterbox_scale_is_exact_per_axis_when_the_short_side_rounds() -> None:
    # 97 wide x 61 high, size 64 -> 64 x round(40.25) = 40: x factor 64/97, y factor 40/61.
    item = _item(61, 97, [[0, 0, 97, 61], [10, 30, 50, 61]])
    ds = TransformedDataset(ListDataset([item]), EvalTransform(64))
    _, target = ds[0]
    torch.testing.assert_close(target["scale"], torch.tensor([64 / 97, 40 / 61]))
    original = Letterbox.to_original(target["boxes"], target["scale"], target["orig_size"])
    torch.testing.assert_close(original, torch.tensor([[0.0, 0, 97, 61], [10, 30, 50, 61]]), atol=1e-3, rtol=0)


def test_eval_items_same_pixels_and_boxes_as_the_albumentations_letterbox_they_replace() -> None:
    shapes = ShapesReader(20, seed=7)
    reference = A.Compose(
        [
            A.LongestMaxSize(max_size=160),
            A.PadIfNeeded(min_height=160, min_width=160, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0),
        ],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], clip=True),
    )
    ds = TransformedDataset(shapes, EvalTransform(160, pad_multiple=32))
    for i in range(len(shapes)):
        image, target = shapes[i]
        expected = reference(image=image, bboxes=target["boxes"], labels=target["labels"])
        tensor, item = ds[i]
        torch.testing.assert_close(tensor, torch.from_numpy(expected["image"]).permute(2, 0, 1).float() / 255, rtol=0, atol=0)
        torch.testing.assert_close(item["boxes"], torch.as_tensor(expected["bboxes"], dtype=torch.float32), rtol=0, atol=1e-4)
        torch.testing.assert_close(item["orig_boxes"], torch.from_numpy(target["boxes"]), rtol=0, atol=0)


def test_eval_letterbox_keeps_every_box_row_for_row_and_pads_to_the_multiple() -> None:
    # a degenerate box and one reaching outside the image (a reader that does not sanitise) are kept
    boxes = [[0, 0, 0, 10], [40, 20, 70, 50], [1, 1, 2, 2]]
    _, target = TransformedDataset(ListDataset([_item(50, 60, boxes)]), EvalTransform(100, pad_multiple=1))[0]
    image, padded = TransformedDataset(ListDataset([_item(50, 60, boxes)]), EvalTransform(100, pad_multiple=128))[0]
    assert image.shape == (3, 128, 128) and padded["boxes"].shape == target["boxes"].shape == (3, 4)
    torch.testing.assert_close(padded["boxes"], target["boxes"])
    torch.testing.assert_close(target["orig_boxes"], torch.tensor(boxes, dtype=torch.float32))
    assert target["labels"].tolist() == [1, 2, 3] and target["area"].tolist() == [5.0, 15.0, 25.0]


def test_boxes_shrinking_under_a_pixel_are_dropped_and_counted():
    image = np.zeros((1000, 1000, 3), np.uint8)
    target = {"boxes": np.array([[10, 10, 13, 13], [100, 100, 600, 700], [900, 5, 902, 900]], np.float32),
              "labels": np.array([0, 1, 2]), "iscrowd": np.zeros(3), "area": np.ones(3)}  # fmt: skip
    transform = TrainTransform(100, hflip_prob=0, scale_range=(1, 1), color_jitter=0, augmentations=[])
    _, out = transform(image, target)
    assert out["small_boxes_dropped"] == 2  # 3 px -> 0.3 px, and 2 px wide -> 0.2 px
    assert out["labels"].tolist() == [1] and out["boxes"].shape == (1, 4)
    np.testing.assert_allclose(out["boxes"][0], [10, 10, 60, 70], atol=1e-3)
