"""The letterbox: resize the longest side to a size, pad bottom/right to a multiple, and map boxes both ways.

:func:`resize_image` is the one image resize of the package (data transforms, mosaic, multi-scale
batches, prediction); :class:`Letterbox` is the one letterbox geometry and its exact inverse.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import clip_boxes_to_image

from detkit.types import Detections, Target

__all__ = ["Letterbox", "fit_longest_side", "resize_image", "round_up", "to_original_pixels"]

Boxes = np.ndarray | Tensor
Scale = tuple[float, float] | Tensor | np.ndarray


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple`` (the padding rule of every letterbox and batch)."""
    return -(-int(value) // int(multiple)) * int(multiple)


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``image`` to ``height x width`` (bilinear, OpenCV ``INTER_LINEAR``).

    The same interpolation as albumentations' ``LongestMaxSize`` / ``Resize`` defaults, without
    antialiasing. Always returns a new array (a copy when the size is unchanged).

    Args:
        image: ``np.ndarray[H, W, C]`` (or ``[H, W]``), uint8 or float32.
        height: Output height, ``>= 1``.
        width: Output width, ``>= 1``.

    Returns:
        ``np.ndarray[height, width, C]`` of the input dtype.
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"resize_image needs an [H, W, C] or [H, W] array, got shape {image.shape}")
    if height < 1 or width < 1:
        raise ValueError(f"resize_image needs height, width >= 1, got {height} x {width}")
    resized = cv2.resize(np.ascontiguousarray(image), (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(int(height), int(width), *image.shape[2:])  # cv2 drops a single channel


def fit_longest_side(height: int, width: int, size: float) -> tuple[tuple[int, int], tuple[float, float]]:
    """``(new_h, new_w)`` with the longest side scaled to ``size``, and the exact ``(sx, sy)`` factors applied.

    Both sides are scaled by ``size / max(height, width)`` and rounded to whole pixels (at least 1),
    as albumentations' ``LongestMaxSize`` rounds them, so the factor actually applied differs per
    axis by up to half a pixel over the side; ``(new_w / width, new_h / height)`` maps boxes
    without that error.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image sides must be >= 1, got {height} x {width}")
    factor = float(size) / float(max(height, width))
    new_h, new_w = max(1, round(height * factor)), max(1, round(width * factor))
    return (new_h, new_w), (new_w / width, new_h / height)


def _per_box(scale: Scale, like: Boxes) -> Boxes:
    """``(sx, sy)`` -> ``(sx, sy, sx, sy)`` in the array library and dtype of ``like``."""
    if isinstance(like, Tensor):
        return torch.as_tensor(scale, dtype=like.dtype, device=like.device).reshape(2).repeat(2)
    return np.tile(np.asarray(scale, dtype=np.float64).reshape(2), 2)


class Letterbox:
    """Resize an image so its longest side is ``size``, then zero-pad bottom/right to a square.

    The square's side is ``padded_size = ceil(size / pad_multiple) * pad_multiple``, so every
    feature map of a detector whose largest stride divides ``pad_multiple`` covers the input
    exactly. The image sits at the top left, so a box maps to the input by a per-axis scale
    ``(sx, sy)`` (see :func:`fit_longest_side`) and back by a division and a clip.

    Example::

        letterbox = Letterbox(640, pad_multiple=32)
        padded, scale = letterbox(image)                     # [640, 640, 3], (sx, sy)
        input_boxes = letterbox.to_input(boxes, scale)       # original -> input pixels
        boxes = letterbox.to_original(detections, scale, image.shape[:2])  # input -> original, clipped
    """

    def __init__(self, size: int, pad_multiple: int = 32) -> None:
        """Args:
        size: Longest side of the resized image, ``>= 1``.
        pad_multiple: The padded square's side is a multiple of this (the detector's largest stride).
        """
        if size < 1:
            raise ValueError(f"letterbox size must be >= 1, got {size}")
        if pad_multiple < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
        self.size = int(size)
        self.pad_multiple = int(pad_multiple)
        self.padded_size = round_up(self.size, self.pad_multiple)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, pad_multiple={self.pad_multiple})"

    def resized_shape(self, height: int, width: int) -> tuple[tuple[int, int], tuple[float, float]]:
        """``((new_h, new_w), (sx, sy))`` of an image of ``height x width`` (see :func:`fit_longest_side`)."""
        return fit_longest_side(height, width, self.size)

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """Letterbox ``image`` (``np.ndarray[H, W, C]``, uint8 or float32).

        Returns:
            ``(padded np.ndarray[S', S', C], (sx, sy))`` with ``S' = padded_size``, zeros outside the
            resized image at the top left.
        """
        (new_h, new_w), scale = self.resized_shape(*image.shape[:2])
        side = self.padded_size
        padded = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
        padded[:new_h, :new_w] = resize_image(image, new_h, new_w)
        return padded, scale

    @staticmethod
    def to_input(boxes: Boxes, scale: Scale) -> Boxes:
        """Map ``[N, 4]`` xyxy boxes from original to letterboxed input pixels (multiply by ``(sx, sy)``).

        numpy boxes come back float32 (computed in float64); tensors keep their dtype.
        """
        if isinstance(boxes, Tensor):
            return boxes * _per_box(scale, boxes)
        return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * _per_box(scale, boxes)).astype(np.float32)

    @staticmethod
    def to_original(boxes: Boxes, scale: Scale, orig_size: tuple[int, int] | Tensor) -> Boxes:
        """Map ``[N, 4]`` xyxy boxes from letterboxed input pixels back to the original image.

        Divides by ``scale = (sx, sy)`` (a ``[2]`` tensor, array or tuple) and clips to
        ``orig_size = (height, width)``: what a detector puts into the padding is cut off.
        """
        h, w = (int(v) for v in orig_size)
        if isinstance(boxes, Tensor):
            return clip_boxes_to_image(boxes / _per_box(scale, boxes), (h, w))
        out = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / _per_box(scale, boxes)
        return np.clip(out, 0.0, np.array([w, h, w, h], dtype=np.float64)).astype(np.float32)


def to_original_pixels(detections: list[Detections], targets: list[Target]) -> tuple[list[Detections], list[Target]]:
    """Detections mapped from letterboxed input pixels back to each original image (the letterbox's
    exact inverse), and the targets with their original-pixel ``orig_boxes`` as ``boxes``."""
    dets_out: list[Detections] = []
    targets_out: list[Target] = []
    for det, tgt in zip(detections, targets):
        boxes = Letterbox.to_original(det["boxes"], tgt["scale"], tuple(tgt["orig_size"].tolist()))
        dets_out.append({**det, "boxes": boxes})
        original = tgt.get("orig_boxes")
        targets_out.append({**tgt, "boxes": original if original is not None else tgt["boxes"]})
    return dets_out, targets_out
