"""Batch collation for detection: pad images to a shared, stride-aligned size; keep targets as a list."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["collate_detection", "PAD_MULTIPLE"]

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
