"""Tests for detkit.models.heads.losses: class targets and background-free box pairs."""

import torch

from detkit.models.heads import class_targets, positive_box_pairs
from detkit.ops.boxes import paired_giou_loss


def test_class_targets_put_the_score_at_the_assigned_class():
    labels = torch.tensor([[2, -1, 0]])
    targets = class_targets(labels, 3, torch.tensor([[0.5, 0.0, 1.0]]))
    assert targets.shape == (1, 3, 3) and targets.dtype == torch.float32
    assert targets.tolist() == [[[0, 0, 0.5], [0, 0, 0], [1, 0, 0]]]
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), 3).float() * (labels >= 0)[..., None]
    assert torch.equal(class_targets(labels, 3, (labels >= 0).float()), onehot)


def test_positive_box_pairs_give_no_gradient_on_background():
    pred = torch.tensor([[[0.0, 0, 10, 10], [5, 5, 6, 6]]], requires_grad=True)
    target = torch.tensor([[[0.0, 0, 20, 10], [0, 0, 0, 0]]])
    a, b = positive_box_pairs(pred, target, torch.tensor([[True, False]]))
    assert torch.equal(a[0, 1], torch.tensor([0.0, 0, 1, 1])) and torch.equal(b[0, 1], a[0, 1])
    loss = paired_giou_loss(a, b)
    assert loss[0, 0].item() == 0.5 and abs(loss[0, 1].item()) < 1e-6
    loss.sum().backward()
    assert (pred.grad[0, 1] == 0).all() and (pred.grad[0, 0] != 0).any()
