"""Tests for detkit.data.images.read_image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detkit.data.images import ImageReadError, read_image

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _half_red_half_blue(width: int = 40, height: int = 20) -> Image.Image:
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:, : width // 2] = RED
    array[:, width // 2 :] = BLUE
    return Image.fromarray(array)


def test_plain_rgb_png_round_trips(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out, array)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    # Stored 40 wide x 20 high, red left / blue right; orientation 6 = display rotated 90 deg clockwise,
    # so the displayed image is 20 wide x 40 high with red on top and blue at the bottom.
    exif = Image.Exif()
    exif[0x0112] = 6
    _half_red_half_blue().save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)
    top, bottom = out[2:18].reshape(-1, 3).mean(0), out[22:38].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_bad_orientation_tag_is_tolerated(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 42  # not a valid orientation
    _half_red_half_blue().save(tmp_path / "bad.jpg", exif=exif.tobytes(), quality=95)
    out = read_image(tmp_path / "bad.jpg")
    assert out.shape == (20, 40, 3)
    assert out[:, :18, 0].mean() > 200 and out[:, 22:, 2].mean() > 200


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (6, 10, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    # CMYK (0, 255, 255, 0) = no cyan, full magenta and yellow = red.
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), RED, atol=12)


def test_rgba_png_composites_alpha_onto_black(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2] = (10, 200, 30, 255)  # opaque: colour kept
    rgba[2:] = (250, 250, 250, 0)  # transparent: hidden colour must not show
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[:2], np.broadcast_to((10, 200, 30), (2, 4, 3)))
    np.testing.assert_array_equal(out[2:], 0)


def test_palette_png_uses_palette_colours(tmp_path: Path) -> None:
    image = Image.new("P", (6, 3))
    image.putpalette([0, 0, 0, 12, 34, 56, 200, 100, 50] + [0] * (256 * 3 - 9))
    image.putdata([1, 2] * 9)
    image.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.shape == (3, 6, 3)
    np.testing.assert_array_equal(out[0, 0], (12, 34, 56))
    np.testing.assert_array_equal(out[0, 1], (200, 100, 50))


def test_16bit_png_is_scaled_to_8bit(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100, 65535, 257 * 3]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I;16")
    out = read_image(tmp_path / "d.png")
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255, 3])


def test_truncated_jpeg_raises_naming_the_file(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        read_image(tmp_path / "cut.jpg")
    assert issubclass(ImageReadError, ValueError)


def test_non_image_and_missing_files_raise(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        read_image(tmp_path / "notes.jpg")
    with pytest.raises(ImageReadError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")
