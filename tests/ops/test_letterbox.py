"""Tests for detkit.ops.letterbox: the one resize, the letterbox geometry and its exact inverse."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from detkit.ops.letterbox import Letterbox, fit_longest_side, resize_image, round_up


def test_scale_and_inverse_for_non_square_image() -> None:
    # A 300x600 (h x w) image letterboxed to 200: scale 1/3, resized to 100x200.
    letterbox = Letterbox(200)
    (new_h, new_w), scale = letterbox.resized_shape(300, 600)
    assert (new_h, new_w) == (100, 200) and scale == pytest.approx((1 / 3, 1 / 3), abs=1e-12)
    original = torch.tensor([[60.0, 30.0, 450.0, 300.0]])
    input_boxes = letterbox.to_input(original, scale)
    torch.testing.assert_close(letterbox.to_original(input_boxes, scale, (300, 600)), original)
    # A box predicted into the padding is clipped to the original image.
    padded = torch.tensor([[150.0, 90.0, 210.0, 150.0]])
    torch.testing.assert_close(letterbox.to_original(padded, torch.tensor(scale), (300, 600)),
                               torch.tensor([[450.0, 270.0, 600.0, 300.0]]))  # fmt: skip
    # (height, width) as a tensor, as a target's orig_size; tensors and arrays clip alike.
    clipped = letterbox.to_original(padded, scale, torch.tensor([300, 600]))
    torch.testing.assert_close(clipped, torch.tensor([[450.0, 270.0, 600.0, 300.0]]))
    np.testing.assert_allclose(letterbox.to_original(padded.numpy(), scale, (300, 600)), clipped.numpy())


def test_resized_shape_gives_exact_per_axis_factors() -> None:
    # 61 x 97 (h x w) to 64: the long side becomes 64, the short side round(61 * 64 / 97) = round(40.25) = 40.
    (new_h, new_w), (sx, sy) = Letterbox(64).resized_shape(61, 97)
    assert (new_h, new_w) == (40, 64)
    assert (sx, sy) == (64 / 97, 40 / 61)
    original = torch.tensor([[0.0, 0.0, 97.0, 61.0]])
    resized = Letterbox.to_input(original, (sx, sy))
    torch.testing.assert_close(resized, torch.tensor([[0.0, 0.0, 64.0, 40.0]]))
    torch.testing.assert_close(Letterbox.to_original(resized, torch.tensor([sx, sy]), (61, 97)), original)


@pytest.mark.parametrize(("height", "width", "size"), [(61, 97, 64), (97, 61, 64), (333, 517, 100), (7, 1001, 77), (50, 50, 33)])
def test_boxes_round_trip_on_odd_sizes(height: int, width: int, size: int) -> None:
    generator = torch.Generator().manual_seed(height * width)
    xy = torch.rand(50, 2, generator=generator, dtype=torch.float64) * torch.tensor([width, height]) * 0.8
    wh = torch.rand(50, 2, generator=generator, dtype=torch.float64) * torch.tensor([width, height]) * 0.2 + 0.5
    boxes = torch.cat([xy, xy + wh], dim=1).clamp(max=torch.tensor([width, height, width, height]))
    letterbox = Letterbox(size, pad_multiple=32)
    (new_h, new_w), scale = letterbox.resized_shape(height, width)
    assert max(new_h, new_w) == size
    inputs = letterbox.to_input(boxes, scale)
    assert (inputs[:, 2] <= new_w + 1e-9).all() and (inputs[:, 3] <= new_h + 1e-9).all()  # inside the image, not the pad
    torch.testing.assert_close(letterbox.to_original(inputs, scale, (height, width)), boxes, rtol=0, atol=1e-9)
    # float32 and numpy agree to float32 precision
    torch.testing.assert_close(letterbox.to_original(inputs.float(), torch.tensor(scale), (height, width)), boxes.float())
    np_inputs = letterbox.to_input(boxes.numpy(), scale)
    assert np_inputs.dtype == np.float32
    np.testing.assert_allclose(letterbox.to_original(np_inputs, scale, (height, width)), boxes.numpy(), rtol=1e-6, atol=1e-4)


def test_letterbox_image_top_left_and_padded_to_multiple() -> None:
    image = np.full((45, 90, 3), 200, dtype=np.uint8)
    for pad_multiple, side in ((1, 100), (32, 128), (128, 128), (7, 105)):
        letterbox = Letterbox(100, pad_multiple)
        assert letterbox.padded_size == side == round_up(100, pad_multiple)
        padded, scale = letterbox(image)
        assert padded.shape == (side, side, 3) and padded.dtype == np.uint8
        assert scale == (100 / 90, 50 / 45)  # 45 x 90 -> round(50.0) x 100
        assert (padded[:50, :100] == 200).all() and not padded[50:].any() and not padded[:, 100:].any()
    floats, _ = Letterbox(30, 16)(np.ones((10, 20, 3), dtype=np.float32))
    assert floats.dtype == np.float32 and floats.shape == (32, 32, 3) and floats[:15, :30].min() == 1.0


def test_same_pixels_as_the_albumentations_letterbox_it_replaces() -> None:
    rng = np.random.default_rng(0)
    for height, width, size in ((61, 97, 64), (120, 60, 240), (333, 517, 160), (160, 160, 160)):
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        reference = A.Compose([
            A.LongestMaxSize(max_size=size),
            A.PadIfNeeded(min_height=size, min_width=size, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0),
        ])(image=image)["image"]  # fmt: skip
        padded, _ = Letterbox(size, pad_multiple=1)(image)
        np.testing.assert_array_equal(padded, reference)


def test_resize_image() -> None:
    image = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    same = resize_image(image, 2, 4)
    np.testing.assert_array_equal(same, image)
    assert same is not image
    assert resize_image(image, 5, 3).shape == (5, 3, 3)
    assert resize_image(np.zeros((4, 4, 1), dtype=np.float32), 2, 2).shape == (2, 2, 1)  # one channel kept
    np.testing.assert_allclose(resize_image(np.full((64, 64, 3), 0.4, dtype=np.float32), 32, 32), 0.4, atol=1e-6)
    flipped = np.ascontiguousarray(image)[:, ::-1]  # a non-contiguous view
    np.testing.assert_array_equal(resize_image(flipped, 2, 4), flipped)
    with pytest.raises(ValueError):
        resize_image(image, 0, 3)
    with pytest.raises(ValueError):
        resize_image(np.zeros(5), 2, 2)


def test_fit_longest_side_and_bad_arguments() -> None:
    assert fit_longest_side(1, 1000, 10) == ((1, 10), (10 / 1000, 1.0))  # at least one pixel
    assert round_up(33, 32) == 64 and round_up(64, 32) == 64 and round_up(5, 1) == 5
    for kwargs in ({"size": 0}, {"size": 10, "pad_multiple": 0}):
        with pytest.raises(ValueError):
            Letterbox(**kwargs)
