"""Batch collation for detection: pad images to a shared, stride-aligned size; multi-scale training batches."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from detkit.ops.letterbox import fit_longest_side, resize_image, round_up

__all__ = ["MultiScaleCollate", "collate_detection"]

Item = tuple[torch.Tensor, dict[str, Any]]


def collate_detection(batch: list[Item], pad_multiple: int = 1) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack ``(image FloatTensor[3, H_i, W_i], target)`` items into one batch.

    Images are zero-padded on the bottom and right to the batch's largest height and width, each
    rounded up to a multiple of ``pad_multiple`` (:func:`~detkit.ops.letterbox.round_up`, the
    letterbox's rule), so box coordinates are unchanged.

    Args:
        batch: The items.
        pad_multiple: Padded sides are multiples of this (the data module passes its own).

    Returns:
        ``(images FloatTensor[B, 3, H, W], targets)`` with ``targets`` the list of ``B`` dicts.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    images = [image for image, _ in batch]
    height = round_up(max(image.shape[-2] for image in images), pad_multiple)
    width = round_up(max(image.shape[-1] for image in images), pad_multiple)
    out = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for i, image in enumerate(images):
        out[i, :, : image.shape[-2], : image.shape[-1]] = image
    return out, [target for _, target in batch]


def _resize_item(image: torch.Tensor, target: dict[str, Any], factor: float) -> Item:
    """Resize one ``[3, H, W]`` item by ``factor`` (sides rounded), scaling ``boxes`` / ``scale`` exactly per axis."""
    height, width = image.shape[-2:]
    (new_h, new_w), (sx, sy) = fit_longest_side(height, width, max(height, width) * factor)
    hwc = image.permute(1, 2, 0).numpy().astype(np.float32, copy=False)
    resized = torch.from_numpy(resize_image(hwc, new_h, new_w)).permute(2, 0, 1).clamp_(0, 1)
    per_axis = torch.tensor([sx, sy], dtype=torch.float32)
    return resized.contiguous(), {**target, "boxes": target["boxes"] * per_axis.repeat(2), "scale": target["scale"] * per_axis}


class MultiScaleCollate:
    """Resize each batch to a size drawn per batch from ``sizes`` (multi-scale training), then collate.

    Training items are letterboxed to ``train_size`` (the largest of ``sizes``); each batch draws
    ``s`` uniformly (torch RNG: seeded per worker) and each image is resized by ``s / train_size``
    with :func:`~detkit.ops.letterbox.resize_image` (sides rounded; ``boxes`` and ``scale`` follow
    by the exact per-axis factors), then padded as :func:`collate_detection` to ``pad_multiple``.
    Evaluation does not use it: it stays at the data module's ``input_size``.
    """

    def __init__(self, sizes: list[int], pad_multiple: int = 1, train_size: int | None = None) -> None:
        """Args:
        sizes: Candidate input sides (positive).
        pad_multiple: Padded batch sides are multiples of this.
        train_size: Side the training items are letterboxed to; default ``max(sizes)``.
        """
        if not sizes or any(int(s) != s or s <= 0 for s in sizes):
            raise ValueError(f"multi-scale sizes must be positive integers, got {sizes}")
        self.sizes = [int(s) for s in sizes]
        self.pad_multiple = int(pad_multiple)
        self.train_size = int(train_size or max(self.sizes))

    def __call__(self, batch: list[Item]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        size = self.sizes[int(torch.randint(len(self.sizes), ()).item())]
        factor = size / self.train_size
        if factor != 1:
            batch = [_resize_item(image, target, factor) for image, target in batch]
        return collate_detection(batch, self.pad_multiple)
