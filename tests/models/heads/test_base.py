"""Tests for detkit.models.heads.base: the point grid, target batching and the DenseHead contract."""

import pytest
import torch

from detkit.models import DenseHead, FeatureInfo, batch_targets, make_points


def test_make_points_hand_computed():
    points, strides = make_points([(2, 3), (1, 1)], [8, 16], device="cpu", dtype=torch.float32)
    expected = torch.tensor(
        [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8]], dtype=torch.float32
    )
    assert torch.equal(points, expected)
    assert torch.equal(strides, torch.tensor([8, 8, 8, 8, 8, 8, 16], dtype=torch.float32))


def test_batch_targets_pads_and_masks_crowd():
    targets = [
        {"boxes": torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]]), "labels": torch.tensor([1, 2]),
         "iscrowd": torch.tensor([0, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        {"boxes": torch.tensor([[0, 0, 9, 9]], dtype=torch.float64), "labels": torch.tensor([0], dtype=torch.int32)},
    ]
    boxes, labels, valid = batch_targets(targets, torch.device("cpu"))
    assert boxes.shape == (3, 2, 4) and boxes.dtype == torch.float32
    assert labels.tolist() == [[1, 2], [-1, -1], [0, -1]] and labels.dtype == torch.int64
    assert valid.tolist() == [[True, False], [False, False], [True, False]]
    assert torch.equal(boxes[2, 0], torch.tensor([0.0, 0, 9, 9])) and (boxes[1] == 0).all()


def test_dense_head_is_abstract_and_checks_inputs():
    with pytest.raises(TypeError, match="abstract"):
        DenseHead([FeatureInfo(8, 8)], 2)

    class Head(DenseHead):
        forward = loss = predict = lambda *args, **kwargs: None

    head = Head([(8, 8), (8, 16)], 2)
    assert head.in_features == [FeatureInfo(8, 8), FeatureInfo(8, 16)] and head.strides == [8, 16]
    with pytest.raises(ValueError, match="num_classes"):
        Head([(8, 8)], 0)
    with pytest.raises(ValueError, match="level"):
        Head([], 2)
