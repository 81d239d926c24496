"""Tests for detkit.data.augment: config-list transforms, presets, clear errors, boxes after flip/crop/rotate."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from detkit.data.augment import build_augmentations, resolve_transform
from detkit.data.transforms import TrainTransform, TransformedDataset


def _run(augmentations: list[dict], box: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """A 100x100 black image with a white object at ``box``, through scale-free train transforms."""
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    image[y1:y2, x1:x2] = 255
    target = {"boxes": np.asarray([box], dtype=np.float32), "labels": np.array([1]), "iscrowd": np.array([0]),
              "area": np.array([5.0], dtype=np.float32), "image_id": 0, "file_name": "x"}  # fmt: skip
    transform = TrainTransform(100, scale_range=(1.0, 1.0), augmentations=augmentations)
    out, result = TransformedDataset([(image, target)], transform)[0]
    return (out[0] * 255).round().numpy(), result["boxes"].numpy()


def _white_extent(image: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(image > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_flip_from_config_list() -> None:
    image, boxes = _run([{"name": "HorizontalFlip", "p": 1.0}], [10, 20, 30, 60])
    np.testing.assert_allclose(boxes, [[70, 20, 90, 60]], atol=1e-4)  # x -> 100 - x
    assert _white_extent(image) == [70, 20, 90, 60]


def test_crop_from_class_path() -> None:
    crop = {"class_path": "albumentations.Crop", "init_args": {"x_min": 20, "y_min": 10, "x_max": 80, "y_max": 70}}
    image, boxes = _run([crop], [10, 20, 30, 60])
    # shifted by (-20, -10) and clipped at 0: [-10, 10, 10, 50] -> [0, 10, 10, 50]; half visible (>= 30 %): kept
    assert image.shape == (60, 60)
    np.testing.assert_allclose(boxes, [[0, 10, 10, 50]], atol=1e-4)
    assert _white_extent(image) == [0, 10, 10, 50]
    _, boxes = _run([crop], [5, 20, 22, 60])  # only 2 of 17 px wide remain (< 30 %): dropped
    assert boxes.shape == (0, 4)


def test_rotate_90_degrees() -> None:
    image, boxes = _run([{"name": "Rotate", "limit": [90, 90], "p": 1.0}], [10, 20, 30, 60])
    # counter-clockwise by 90 deg about the centre of a 100x100 image: (x, y) -> (y, 100 - x)
    np.testing.assert_allclose(boxes, [[20, 70, 60, 90]], atol=1.0)
    np.testing.assert_allclose(_white_extent(image), [20, 70, 60, 90], atol=1)


def test_presets_and_their_strengths() -> None:
    light = build_augmentations("light", hflip_prob=0.25)
    assert [type(t) for t in light] == [A.HorizontalFlip] and light[0].p == 0.25
    assert [type(t) for t in build_augmentations("default", color_jitter=0.0)] == [A.HorizontalFlip]
    heavy = build_augmentations("heavy")
    assert {A.Affine, A.ColorJitter, A.OneOf, A.ToGray} <= {type(t) for t in heavy}
    with pytest.raises(ValueError, match="unknown augmentation preset 'wild'"):
        build_augmentations("wild")


def test_nested_one_of_and_list_arguments() -> None:
    one_of = resolve_transform({"name": "OneOf", "p": 0.3, "transforms": [{"name": "Blur", "blur_limit": [3, 5]}, {"name": "ToGray"}]})
    assert isinstance(one_of, A.OneOf) and [type(t) for t in one_of.transforms] == [A.Blur, A.ToGray]
    assert one_of.transforms[0].blur_limit == (3, 5)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "Rotat"}, r"unknown albumentations transform 'Rotat'; did you mean Rotate"),
        ({"name": "Rotate", "limt": 10}, r"augmentations \(Rotate\): unknown arguments \['limt'\]; Rotate takes .*'limit'"),
        ({"class_path": "torch.nn.Linear", "init_args": {}}, r"not an albumentations transform"),
        ({"class_path": "albumentations.Compose"}, r"unknown albumentations transform"),
        ({"name": "RandomCrop", "height": 10}, r"missing required arguments \['width'\]"),
        ({"name": "RandomSizedBBoxSafeCrop", "height": 10, "width": 10}, r"resizes the image, which detkit's letterbox does"),
        ({"class_path": "albumentations.LongestMaxSize", "init_args": {"max_size": 64}}, r"LongestMaxSize resizes the image"),
        ({"name": "Blur", "p": 7}, r"augmentations \(Blur\): invalid arguments"),
        ({"limit": 3}, r"needs 'name' or 'class_path'"),
    ],
)
def test_bad_entries_are_clear_errors(entry: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_transform(entry)


def test_list_error_names_its_position() -> None:
    with pytest.raises(ValueError, match=r"augmentations\[1\] \(Nope\)"):
        build_augmentations([{"name": "HorizontalFlip"}, {"name": "Nope"}])
    with pytest.raises(ValueError, match=r"augmentations\[0\]"):
        TrainTransform(64, augmentations=[{"name": "Rotate", "bad": 1}])


def test_config_pipeline_follows_torch_seed() -> None:
    spec = [{"name": "Rotate", "limit": 30, "p": 1.0}]

    def run() -> np.ndarray:
        torch.manual_seed(5)
        return _run(spec, [10, 20, 30, 60])[1]

    np.testing.assert_array_equal(run(), run())
