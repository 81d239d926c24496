"""Image reading: any file PIL can open -> ``HxWx3`` uint8 RGB array, EXIF orientation applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageReadError", "read_image", "image_size", "IMAGE_EXTENSIONS"]

#: File suffixes (lower case) treated as images by folder datasets.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class ImageReadError(ValueError):
    """An image file is missing, truncated or not an image; the message names the file."""


def _exif_transpose(image: Image.Image) -> Image.Image:
    """Rotate/flip by the EXIF orientation tag; a malformed tag leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - corrupt EXIF blocks raise many different errors
        return image


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an ``HxWx3`` uint8 RGB array."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # High bit-depth single channel: scale to 8 bits (16-bit by /257, 32-bit ints and floats by range).
        array = np.asarray(image)
        if mode.startswith("I;16"):
            gray = (array.astype(np.float32) / 257.0).round()
        else:
            array = array.astype(np.float64)
            lo, hi = float(np.min(array)), float(np.max(array))
            if mode == "I" and lo >= 0 and hi <= 65535:
                gray = (array / (257.0 if hi > 255 else 1.0)).round()
            elif mode == "F" and lo >= 0 and hi <= 1:
                gray = (array * 255.0).round()
            else:
                gray = (array - lo) / max(hi - lo, 1e-12) * 255.0
        gray = np.clip(gray, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite transparent pixels onto black so hidden colour values do not leak in.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB.

    Applies the EXIF orientation, converts grey, palette, alpha, CMYK and 16/32-bit modes to RGB
    (16-bit values scaled to 8 bits), and fully decodes the file so truncation is detected here.

    Args:
        path: Image file.

    Returns:
        ``np.ndarray[H, W, 3]`` uint8 RGB.

    Raises:
        ImageReadError: The file is missing, truncated or not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncated data raises OSError here
            image = _exif_transpose(image)
            return _to_rgb_array(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error


_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of an image as :func:`read_image` returns it (EXIF orientation applied).

    Reads only the header, so it is cheap but does not detect truncated pixel data.

    Raises:
        ImageReadError: The file is missing or its header is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(0x0112)
            except Exception:  # noqa: BLE001 - a corrupt EXIF block: use the stored orientation
                orientation = None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    return (width, height) if orientation in _TRANSPOSING_ORIENTATIONS else (height, width)
