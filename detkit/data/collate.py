"""Batch collation for detection: pad images to a shared, stride-aligned size; multi-scale training batches."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["collate_detection", "MultiScaleCollate", "PAD_MULTIPLE"]

#: Padded batch sides are rounded up to a multiple of this (the largest backbone stride).
PAD_MULTIPLE = 32


def collate_detection(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack ``(image FloatTensor[3, H_i, W_i], target)`` items into one batch.

    Images are zero-padded on the bottom and right to the batch's largest height and width, each
    rounded up to a multiple of :data:`PAD_MULTIPLE`, so box coordinates are unchanged.

    Returns:
        ``(images FloatTensor[B, 3, H, W], targets)`` with ``targets`` the list of ``B`` dicts.
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    images = [image for image, _ in batch]
    height = max(image.shape[-2] for image in images)
    width = max(image.shape[-1] for image in images)
    height = -(-height // PAD_MULTIPLE) * PAD_MULTIPLE
    width = -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
    out = images[0].new_zeros((len(images), images[0].shape[0], height, width))
    for i, image in enumerate(images):
        out[i, :, : image.shape[-2], : image.shape[-1]] = image
    return out, [target for _, target in batch]


class MultiScaleCollate:
    """Collate, then resize the whole batch to a size drawn per batch from ``sizes`` (multi-scale training).

    Training items are letterboxed to ``train_size`` (the largest of ``sizes``); each batch draws
    ``s`` uniformly (torch RNG: seeded per worker) and is resized by ``f = s / train_size``
    (bilinear, antialiased), with ``boxes`` and ``scale`` multiplied by ``f``, then padded to a
    multiple of :data:`PAD_MULTIPLE`. Evaluation does not use it: it stays at the DataModule's
    ``input_size``.
    """

    def __init__(self, sizes: list[int], train_size: int | None = None) -> None:
        """Args:
        sizes: Candidate input sides (each a positive multiple of :data:`PAD_MULTIPLE`).
        train_size: Side the training items are letterboxed to; default ``max(sizes)``.
        """
        if not sizes or any(s <= 0 or s % PAD_MULTIPLE for s in sizes):
            raise ValueError(f"multi-scale sizes must be positive multiples of {PAD_MULTIPLE}, got {sizes}")
        self.sizes = [int(s) for s in sizes]
        self.train_size = int(train_size or max(self.sizes))

    def __call__(self, batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        images, targets = collate_detection(batch)
        size = self.sizes[int(torch.randint(len(self.sizes), ()).item())]
        factor = size / self.train_size
        if factor == 1:
            return images, targets
        height, width = round(images.shape[-2] * factor), round(images.shape[-1] * factor)
        resized = F.interpolate(
            images, size=(height, width), mode="bilinear", align_corners=False, antialias=factor < 1
        )
        height, width = -(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE
        out = resized.new_zeros((images.shape[0], images.shape[1], height, width))
        out[:, :, : resized.shape[-2], : resized.shape[-1]] = resized.clamp_(0, 1)
        targets = [{**t, "boxes": t["boxes"] * factor, "scale": t["scale"] * factor} for t in targets]
        return out, targets
