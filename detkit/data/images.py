"""Images in any form (file, PIL image, numpy array, tensor) -> one ``HxWx3`` uint8 RGB array, decoded one way."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageLike",
    "ImageReadError",
    "TruncatedImageWarning",
    "image_files",
    "image_size",
    "read_image",
    "to_rgb_array",
]

#: File suffixes (lower case) treated as images by folder datasets.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: Every form :func:`to_rgb_array` takes.
ImageLike = Union[str, Path, Image.Image, np.ndarray, torch.Tensor]

_JPEG_EOI = b"\xff\xd9"  # end-of-image marker


class ImageReadError(ValueError):
    """An image file is missing, truncated or not an image; the message names the file."""


class TruncatedImageWarning(UserWarning):
    """A JPEG missing its last bytes was decoded as far as its data goes (the rest filled grey).

    The message names the file, so recovered files can be counted with ``warnings.catch_warnings``
    or made errors with ``warnings.simplefilter("error", TruncatedImageWarning)``.
    """


def _exif_transpose(image: Image.Image) -> Image.Image:
    """Rotate/flip by the EXIF orientation tag; a malformed tag leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - corrupt EXIF blocks raise many different errors
        return image


def _scale_16bit(array: np.ndarray) -> np.ndarray:
    """16-bit values -> uint8 by ``/ 257`` (65535 -> 255), rounded: the one 16-to-8-bit rule."""
    return np.clip((array.astype(np.float32) / 257.0).round(), 0, 255).astype(np.uint8)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an ``HxWx3`` uint8 RGB array (no EXIF handling)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # High bit-depth single channel: scale to 8 bits (16-bit by /257, 32-bit ints and floats by range).
        array = np.asarray(image)
        if mode.startswith("I;16"):
            gray = _scale_16bit(array)
        else:
            array = array.astype(np.float64)
            lo, hi = float(np.min(array)), float(np.max(array))
            if mode == "I" and lo >= 0 and hi <= 65535:
                scaled = (array / (257.0 if hi > 255 else 1.0)).round()
            elif mode == "F" and lo >= 0 and hi <= 1:
                scaled = (array * 255.0).round()
            else:
                scaled = (array - lo) / max(hi - lo, 1e-12) * 255.0
            gray = np.clip(scaled, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite transparent pixels onto black so hidden colour values do not leak in.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _unit_floats_to_uint8(array: np.ndarray) -> np.ndarray:
    """Floats in ``[0, 1]`` -> uint8 ``round(255 * x)`` (an overshoot of up to 0.01, as resampling
    leaves, is clipped); any other range is a ``ValueError``."""
    if array.size and not np.isfinite(array).all():
        raise ValueError("float image has NaN or infinite values: expected 0..1 floats or uint8 0..255")
    lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if lo < -0.01 or hi > 1.01:
        raise ValueError(f"float image values in [{lo:g}, {hi:g}]: expected 0..1 floats or uint8 0..255")
    return np.rint(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0).astype(np.uint8)


_ARRAY_FORMS = "HxWx3 uint8 RGB (or HxW grey, HxWx4 RGBA; uint16 is scaled like 16-bit PNG, floats must be in 0..1)"


def _array_to_rgb(array: np.ndarray, kind: str) -> np.ndarray:
    """An ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` array -> ``HxWx3`` uint8 RGB."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise ValueError(f"{kind} images must be {_ARRAY_FORMS}, got shape {tuple(array.shape)}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{kind} image is empty: shape {tuple(array.shape)}")
    if array.dtype == np.uint16:
        array = _scale_16bit(array)
    elif np.issubdtype(array.dtype, np.floating):
        array = _unit_floats_to_uint8(array)
    elif array.dtype != np.uint8:
        raise ValueError(f"{kind} images must be {_ARRAY_FORMS}, got dtype {array.dtype}")
    if array.ndim == 2:  # grey -> three equal channels, as read_image converts a grey file
        return np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:  # RGBA -> composited onto black, as read_image converts an RGBA file
        return _pil_to_rgb(Image.fromarray(np.ascontiguousarray(array)))
    return np.ascontiguousarray(array)


def _tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """A ``[C, H, W]`` (C = 1, 3 or 4) or ``[H, W]`` tensor -> the same image as an ``HxWxC`` numpy array."""
    tensor = tensor.detach().cpu()
    if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
        tensor = tensor.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
    elif tensor.ndim != 2:
        raise ValueError(
            f"tensor images must be [3, H, W] RGB (or [H, W] grey, [1 or 4, H, W]), uint8 or float in 0..1, "
            f"got shape {tuple(tensor.shape)}" + ("; permute(2, 0, 1) an HWC tensor" if tensor.ndim == 3 else "")
        )
    return tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """Any image form -> ``np.ndarray[H, W, 3]`` uint8 RGB, the same pixels whatever the form.

    - a path: :func:`read_image`;
    - a PIL image: EXIF orientation and the mode conversion of :func:`read_image` (grey, palette,
      alpha composited onto black, CMYK, 16-bit scaled by ``/257``);
    - a numpy array ``[H, W, 3]`` RGB, ``[H, W]`` (or ``[H, W, 1]``) grey or ``[H, W, 4]`` RGBA;
    - a tensor ``[3, H, W]`` RGB, ``[H, W]`` / ``[1, H, W]`` grey or ``[4, H, W]`` RGBA.

    Arrays and tensors are uint8 ``0..255``, uint16 (scaled like a 16-bit PNG) or floats in
    ``[0, 1]`` (rounded to ``round(255 * x)``, so ``u / 255`` gives back exactly ``u``).

    Raises:
        ImageReadError: A file (or the file behind a PIL image) cannot be decoded.
        ValueError: An array or tensor of another shape or dtype, or floats outside ``[0, 1]``.
        TypeError: Any other object.
    """
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        try:
            image.load()
        except OSError as error:
            filename = getattr(image, "filename", "")
            if filename and Path(filename).is_file():
                return read_image(filename)  # the file's own rules: recover a truncated JPEG or name it
            raise ImageReadError(f"cannot decode the given PIL image: {error}") from error
        return _pil_to_rgb(_exif_transpose(image))
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, "numpy")
    if isinstance(image, torch.Tensor):
        return _array_to_rgb(_tensor_to_array(image), "tensor")
    raise TypeError(f"unsupported image type {type(image).__name__}; give a path, PIL image, numpy array or tensor")


def _jpeg_scan_start(data: bytes) -> int | None:
    """Offset of a JPEG's first entropy-coded byte (just past its first SOS segment); ``None`` if
    the data ends (or stops being a marker sequence) before that."""
    pos = 2  # past SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # SOS: the pixel data follows its header
            return pos + 2 + length
        pos += 2 + length
    return None


def _decode_truncated_jpeg(path: Path) -> Image.Image:
    """Decode a JPEG that ends early, as viewers show it: the data there is, the rest grey.

    Appends the end-of-image marker that ``ImageFile.LOAD_TRUNCATED_IMAGES`` would insert at the
    premature end (same pixels), without changing that process-wide flag. Warns, naming the file.

    Raises:
        ImageReadError: The file ends before any pixel data.
    """
    data = path.read_bytes()
    start = _jpeg_scan_start(data)
    if start is None or start >= len(data):
        raise ImageReadError(f"cannot read image {path}: truncated before any pixel data")
    image = Image.open(io.BytesIO(data + _JPEG_EOI))
    image.load()
    warnings.warn(f"recovered truncated image {path} (missing data filled grey)", TruncatedImageWarning, stacklevel=3)
    return image


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB.

    Applies the EXIF orientation, converts grey, palette, alpha, CMYK and 16/32-bit modes to RGB
    (16-bit values scaled to 8 bits), and fully decodes the file so truncation is detected here. A
    JPEG missing only its last bytes is decoded as far as its data goes, the rest grey, with a
    :class:`TruncatedImageWarning` naming it.

    Args:
        path: Image file.

    Returns:
        ``np.ndarray[H, W, 3]`` uint8 RGB.

    Raises:
        ImageReadError: The file is missing, not a readable image, or truncated (a JPEG: before any
            pixel data).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            try:
                image.load()  # decode now: truncated data raises OSError here
            except OSError as error:
                if image.format != "JPEG" or not str(error).startswith("image file is truncated"):
                    raise
                image = _decode_truncated_jpeg(path)
            return _pil_to_rgb(_exif_transpose(image))
    except ImageReadError:
        raise
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
            except Exception:  # noqa: BLE001 - corrupt EXIF blocks raise many different errors
                orientation = None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    return (width, height) if orientation in _TRANSPOSING_ORIENTATIONS else (height, width)


def image_files(path: str | Path) -> list[Path]:
    """The images at ``path``: the file itself, or a folder's files with an :data:`IMAGE_EXTENSIONS`
    suffix (not its subfolders), sorted by name.

    Raises:
        FileNotFoundError: Nothing at ``path``, or a folder without image files (the message names it).
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        return found
    raise FileNotFoundError(f"no image or folder at {path}")
