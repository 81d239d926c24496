"""Tests for detkit.data.collate.collate_detection."""

from __future__ import annotations

import pytest
import torch

from detkit.data.collate import collate_detection


def test_pads_bottom_right_to_the_pad_multiple() -> None:
    a, b = torch.rand(3, 50, 70), torch.rand(3, 65, 33)
    ta, tb = {"boxes": torch.zeros(0, 4), "image_id": 0}, {"boxes": torch.ones(1, 4), "image_id": 1}
    images, targets = collate_detection([(a, ta), (b, tb)], pad_multiple=32)
    assert images.shape == (2, 3, 96, 96)  # max 65 -> 96, max 70 -> 96
    torch.testing.assert_close(images[0, :, :50, :70], a)
    torch.testing.assert_close(images[1, :, :65, :33], b)
    assert (images[0, :, 50:] == 0).all() and (images[0, :, :, 70:] == 0).all()
    assert (images[1, :, 65:] == 0).all() and (images[1, :, :, 33:] == 0).all()
    assert targets == [ta, tb] and targets[1] is tb


def test_aligned_sizes_are_not_padded() -> None:
    images, _ = collate_detection([(torch.rand(3, 64, 128), {}), (torch.rand(3, 64, 96), {})], pad_multiple=32)
    assert images.shape == (2, 3, 64, 128)


def test_pad_multiple_follows_the_argument() -> None:
    batch = [(torch.rand(3, 50, 70), {}), (torch.rand(3, 65, 33), {})]
    assert collate_detection(batch)[0].shape[-2:] == (65, 70)  # default 1: the largest sides only
    assert collate_detection(batch, pad_multiple=128)[0].shape[-2:] == (128, 128)
    assert collate_detection(batch, pad_multiple=7)[0].shape[-2:] == (70, 70)


def test_empty_batch_raises() -> None:
    with pytest.raises(ValueError):
        collate_detection([])
