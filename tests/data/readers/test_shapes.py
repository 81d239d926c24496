"""Tests for detkit.data.readers.shapes.ShapesReader."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from detkit.data.readers.shapes import ShapesReader


def test_items_follow_the_contract() -> None:
    ds = ShapesReader(num_images=30, seed=3, min_image_size=96, max_image_size=160, max_shapes=4)
    assert len(ds) == 30
    assert ds.class_names == ["circle", "square", "triangle"]
    sizes = set()
    for i in range(len(ds)):
        image, target = ds[i]
        h, w = image.shape[:2]
        sizes.add((h, w))
        assert image.dtype == np.uint8 and image.shape == (h, w, 3)
        assert 96 <= h <= 160 and 96 <= w <= 160
        n = len(target["boxes"])
        assert 1 <= n <= 4
        assert target["boxes"].dtype == np.float32 and target["boxes"].shape == (n, 4)
        assert target["labels"].dtype == np.int64 and set(target["labels"].tolist()) <= {0, 1, 2}
        assert target["iscrowd"].dtype == np.int64 and not target["iscrowd"].any()
        assert target["image_id"] == i
        assert target["file_name"] == f"shapes_3_{i:06d}.png"
        b = target["boxes"]
        np.testing.assert_array_equal(target["area"], (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        assert target["area"].dtype == np.float32
    assert any(h != w for h, w in sizes)  # non-square images occur


def test_deterministic_per_seed_and_index() -> None:
    a, b = ShapesReader(10, seed=5), ShapesReader(10, seed=5)
    for i in (0, 7, 3):  # order of access must not matter
        ia, ta = a[i]
        ib, tb = b[i]
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(ta["boxes"], tb["boxes"])
        np.testing.assert_array_equal(ta["labels"], tb["labels"])
    other = ShapesReader(10, seed=6)
    assert not all(
        a[i][0].shape == other[i][0].shape and np.array_equal(a[i][0], other[i][0]) for i in range(10)
    )


def test_boxes_inside_image_sized_and_limited_overlap() -> None:
    ds = ShapesReader(100, seed=1)
    labels_seen = set()
    for i in range(len(ds)):
        image, target = ds[i]
        h, w = image.shape[:2]
        boxes = target["boxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        # the larger box side is at most half the short image side
        assert ((boxes[:, 2:] - boxes[:, :2]).max(axis=1) <= 0.5 * min(h, w) + 1).all()
        iou = box_iou(torch.from_numpy(boxes), torch.from_numpy(boxes)).fill_diagonal_(0)
        assert iou.max() <= 0.3 + 1e-6
        labels_seen |= set(target["labels"].tolist())
    assert labels_seen == {0, 1, 2}


def test_boxes_are_tight_on_solid_backgrounds() -> None:
    # With one shape per image, an image whose pixels outside the box are all one colour has a solid
    # background. The box must then touch the shape on all four sides: each edge row/column inside
    # the box contains a shape pixel (a colour different from the background).
    ds = ShapesReader(60, seed=2, max_shapes=1)
    checked = 0
    for i in range(len(ds)):
        image, target = ds[i]
        x1, y1, x2, y2 = (int(v) for v in target["boxes"][0])
        assert target["boxes"][0].tolist() == [x1, y1, x2, y2]  # pixel-aligned
        outside = np.ones(image.shape[:2], dtype=bool)
        outside[y1:y2, x1:x2] = False
        background = image[0, 0] if outside[0, 0] else image[-1, -1]
        if not (image[outside] == background).all():
            continue  # gradient or noise background
        checked += 1
        differs = (image != background).any(axis=2)  # [H, W] shape pixels
        assert not differs[outside].any()
        assert differs[y1, x1:x2].any() and differs[y2 - 1, x1:x2].any()
        assert differs[y1:y2, x1].any() and differs[y1:y2, x2 - 1].any()
    assert checked >= 5


def test_generation_is_fast() -> None:
    ds = ShapesReader(200, seed=0)
    ds[0]
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    assert (time.perf_counter() - start) / len(ds) < 2e-3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_images": -1},
        {"num_images": 5, "seed": -1},
        {"num_images": 5, "min_image_size": 200, "max_image_size": 100},
        {"num_images": 5, "max_shapes": 0},
    ],
)
def test_invalid_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ShapesReader(**kwargs)


def test_index_out_of_range_raises() -> None:
    with pytest.raises(IndexError):
        ShapesReader(3)[3]
