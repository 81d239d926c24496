"""Tests for detkit.data.images: read_image (modes, EXIF, truncated and broken files) and to_rgb_array."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from detkit.data.images import ImageReadError, TruncatedImageWarning, read_image, to_rgb_array

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


def test_non_image_and_missing_files_raise(tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        read_image(tmp_path / "notes.jpg")
    with pytest.raises(ImageReadError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")


# --- truncated and broken files ---------------------------------------------------------------


def _noisy_jpeg(path: Path, progressive: bool = False, orientation: int | None = None) -> bytes:
    """A 48x64 (h x w) JPEG of smooth gradients plus noise; returns its bytes."""
    rng = np.random.default_rng(0)
    ramp = (np.indices((48, 64)).sum(0) * 3 % 256).astype(np.uint8)
    array = np.stack([ramp, ramp[::-1], 255 - ramp], -1) // 2 + rng.integers(0, 64, (48, 64, 3), dtype=np.uint8)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(array).save(path, quality=90, progressive=progressive, exif=exif.tobytes())
    return path.read_bytes()


def _scan_start(data: bytes) -> int:
    """Offset just past the first SOS segment (the test images have no embedded thumbnail)."""
    sos = data.index(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big")


def _viewer_pixels(path: Path) -> np.ndarray:
    """What PIL shows with its process-wide LOAD_TRUNCATED_IMAGES flag (the behaviour to match)."""
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with Image.open(path) as image:
            return to_rgb_array(image)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


@pytest.mark.parametrize(
    "keep, progressive, orientation, shape",
    [(0.9, False, None, (48, 64, 3)), (0.5, False, None, (48, 64, 3)), (0.9, True, None, (48, 64, 3)), (0.9, False, 6, (64, 48, 3))],
)
def test_truncated_jpeg_is_recovered_with_a_warning_naming_it(tmp_path, keep, progressive, orientation, shape):
    data = _noisy_jpeg(tmp_path / "full.jpg", progressive, orientation)
    (tmp_path / "cut.jpg").write_bytes(data[: int(len(data) * keep)])
    with pytest.warns(TruncatedImageWarning, match=r"recovered truncated image .*cut\.jpg \(missing data filled grey\)"):
        out = read_image(tmp_path / "cut.jpg")
    assert out.dtype == np.uint8 and out.shape == shape
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # the process-wide flag is left alone
    np.testing.assert_array_equal(out, _viewer_pixels(tmp_path / "cut.jpg"))
    with pytest.warns(TruncatedImageWarning, match="cut.jpg"), Image.open(tmp_path / "cut.jpg") as image:
        np.testing.assert_array_equal(to_rgb_array(image), out)  # the same file opened by the caller
    full = read_image(tmp_path / "full.jpg")
    if keep == 0.9 and orientation is None and not progressive:  # baseline decodes top-down: top rows intact
        np.testing.assert_array_equal(out[:8], full[:8])


def test_truncated_jpeg_warns_once_per_read_so_files_can_be_counted(tmp_path):
    data = _noisy_jpeg(tmp_path / "full.jpg")
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(data[:-100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in ("a.jpg", "b.jpg", "full.jpg"):
            read_image(tmp_path / name)
    recovered = [str(w.message) for w in caught if issubclass(w.category, TruncatedImageWarning)]
    assert len(recovered) == 2 and "a.jpg" in recovered[0] and "b.jpg" in recovered[1]
    assert issubclass(TruncatedImageWarning, UserWarning)
    with warnings.catch_warnings():  # strict datasets can make recovery an error
        warnings.simplefilter("error", TruncatedImageWarning)
        with pytest.raises(TruncatedImageWarning, match="a.jpg"):
            read_image(tmp_path / "a.jpg")


def _cut_jpeg(cut: str):
    def make(path: Path) -> bytes:
        data = _noisy_jpeg(path.with_name("source.jpg"))
        end = {"after_header": _scan_start(data), "in_header": 100, "soi_only": 2}[cut]
        return data[:end]

    return make


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("empty.jpg", lambda path: b"", "cannot identify"),
        ("garbage.jpg", lambda path: bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)), "cannot identify"),
        ("text.png", lambda path: b"this is not an image", "cannot identify"),
        ("header_only.jpg", _cut_jpeg("after_header"), "truncated before any pixel data"),
        ("mid_header.jpg", _cut_jpeg("in_header"), "cannot read image"),
        ("soi_only.jpg", _cut_jpeg("soi_only"), "cannot identify"),
    ],
)
def test_undecodable_files_raise_naming_the_file(tmp_path, name, make, reason):
    (tmp_path / name).write_bytes(make(tmp_path / name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no recovery warning on the way
        with pytest.raises(ImageReadError, match=rf"{name}.*{reason}|{reason}.*{name}"):
            read_image(tmp_path / name)


def test_truncated_png_is_not_recovered(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(tmp_path / "cut.png")


# --- to_rgb_array: every in-memory form gives read_image's pixels ----------------------------


def test_pil_forms_match_read_image(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    _half_red_half_blue().save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    rgba = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    Image.fromarray(np.array([[0, 257 * 100, 65535, 300]], dtype=np.uint16)).save(tmp_path / "d.png")
    for name in ("rot.jpg", "a.png", "d.png"):
        with Image.open(tmp_path / name) as image:
            np.testing.assert_array_equal(to_rgb_array(image), read_image(tmp_path / name), err_msg=name)
        np.testing.assert_array_equal(to_rgb_array(str(tmp_path / name)), read_image(tmp_path / name))
    np.testing.assert_array_equal(to_rgb_array(rgba), read_image(tmp_path / "a.png"))  # HxWx4 numpy
    np.testing.assert_array_equal(to_rgb_array(np.asarray(Image.open(tmp_path / "d.png"))), read_image(tmp_path / "d.png"))


def test_array_and_tensor_forms_agree():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    for form in (rgb, chw, chw.float() / 255, chw.double() / 255, rgb.astype(np.float32) / 255):
        out = to_rgb_array(form)
        assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
        np.testing.assert_array_equal(out, rgb)
    gray = rgb[:, :, 0]
    for form in (gray, gray[:, :, None], torch.from_numpy(gray), torch.from_numpy(gray)[None]):
        np.testing.assert_array_equal(to_rgb_array(form), np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(to_rgb_array(gray.astype(np.uint16) * 257), np.repeat(gray[:, :, None], 3, axis=2))


@pytest.mark.parametrize(
    "image, error, match",
    [
        (torch.full((3, 4, 4), 200.0), ValueError, r"float image values in \[200, 200\]: expected 0..1 floats or uint8 0..255"),
        (np.linspace(0, 255, 48, dtype=np.float32).reshape(4, 4, 3), ValueError, r"values in \[0, 255\]"),
        (torch.full((3, 4, 4), -0.5), ValueError, r"values in \[-0.5, -0.5\]"),
        (torch.full((3, 4, 4), float("nan")), ValueError, "NaN or infinite"),
        (np.zeros((4, 4, 2), dtype=np.uint8), ValueError, r"numpy images must be HxWx3 uint8.*shape \(4, 4, 2\)"),
        (np.zeros((4, 4, 3), dtype=np.int64), ValueError, "got dtype int64"),
        (np.zeros((0, 4, 3), dtype=np.uint8), ValueError, "empty"),
        (torch.zeros(5, 6, 3), ValueError, r"permute\(2, 0, 1\)"),
        (torch.zeros(2, 3, 4, 4), ValueError, r"tensor images must be \[3, H, W\]"),
        ([[0, 1], [1, 0]], TypeError, "unsupported image type list"),
    ],
)
def test_malformed_in_memory_images_raise_saying_what_is_expected(image, error, match):
    with pytest.raises(error, match=match):
        to_rgb_array(image)


def test_image_files_of_a_file_a_folder_and_nothing(tmp_path: Path) -> None:
    from detkit.data.images import image_files

    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()  # a folder named like an image is not one
    assert image_files(tmp_path) == [tmp_path / "a.JPG", tmp_path / "b.png"]
    assert image_files(str(tmp_path / "notes.txt")) == [tmp_path / "notes.txt"]  # a file is taken as given
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files .* in .*empty"):
        image_files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no image or folder at .*missing"):
        image_files(tmp_path / "missing")
