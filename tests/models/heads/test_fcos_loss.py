"""Tests for detkit.models.heads.fcos_loss."""

import math

import torch

from detkit.models.heads import AssignedTargets
from detkit.models.heads.fcos_loss import FCOSLoss, centerness_target
from detkit.ops.boxes import paired_iou


def _assigned(labels, boxes):
    """What the FCOS assigner gives: ``scores`` one for positives, the positives' box index 0."""
    labels = torch.as_tensor(labels)
    return AssignedTargets(labels, torch.as_tensor(boxes), (labels >= 0).float(), torch.where(labels >= 0, 0, -1))


def test_centerness_and_paired_iou_hand_computed():
    ltrb = torch.tensor([[1.0, 3.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]])
    assert torch.allclose(centerness_target(ltrb), torch.tensor([math.sqrt(0.5), 1.0]))
    a = torch.tensor([[0.0, 0, 2, 2], [0.0, 0, 1, 1]])
    b = torch.tensor([[1.0, 0, 3, 2], [2.0, 2, 3, 3]])
    assert torch.allclose(paired_iou(a, b), torch.tensor([2 / 6, 0.0]))


def test_single_positive_hand_computed():
    loss = FCOSLoss()
    points = torch.tensor([[10.0, 10.0], [30.0, 30.0]])
    cls = torch.zeros(1, 2, 1)
    ltrb = torch.tensor([[[5.0, 5.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]]])
    quality = torch.zeros(1, 2)
    labels = torch.tensor([[0, -1]])
    matched = torch.tensor([[[5.0, 5.0, 15.0, 15.0], [0.0, 0.0, 0.0, 0.0]]])
    out = loss(cls, ltrb, quality, points, _assigned(labels, matched))
    # Focal at p=0.5: positive alpha*0.25*log2, negative (1-alpha)*0.25*log2; one positive.
    expected_cls = 0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)
    assert math.isclose(out["loss_cls"].item(), expected_cls, rel_tol=1e-5)
    assert out["loss_box"].item() < 1e-6  # perfect box
    assert math.isclose(out["loss_quality"].item(), math.log(2), rel_tol=1e-5)  # BCE(0 logit, target 1)
    assert math.isclose(out["loss"].item(), expected_cls + math.log(2), rel_tol=1e-5)


def test_box_loss_is_giou_mean_over_positives():
    loss = FCOSLoss(box_weight=2.0)
    points = torch.tensor([[10.0, 10.0]] * 2)
    ltrb = torch.tensor([[[10.0, 10.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0]]])  # [0,0,20,20], [5,5,15,15]
    matched = torch.tensor([[[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 20.0, 20.0]]])
    out = loss(torch.zeros(1, 2, 3), ltrb, torch.zeros(1, 2), points, _assigned([[1, 2]], matched))
    # Second box: IoU 100/400, enclosing box = target -> GIoU loss 0.75; mean over 2 positives.
    assert math.isclose(out["loss_box"].item(), 0.375, rel_tol=1e-5)
    total = out["loss_cls"] + 2.0 * out["loss_box"] + out["loss_quality"]
    assert torch.allclose(out["loss"], total)


def test_iou_quality_target():
    loss = FCOSLoss(quality="iou")
    points = torch.tensor([[10.0, 10.0]])
    ltrb = torch.tensor([[[5.0, 5.0, 5.0, 5.0]]], requires_grad=True)  # IoU 0.25 with target
    matched = torch.tensor([[[0.0, 0.0, 20.0, 20.0]]])
    out = loss(torch.zeros(1, 1, 1), ltrb, torch.zeros(1, 1), points, _assigned([[0]], matched))
    expected = -(0.25 * math.log(0.5) + 0.75 * math.log(0.5))
    assert math.isclose(out["loss_quality"].item(), expected, rel_tol=1e-5)


def test_zero_positives_finite_with_gradients():
    loss = FCOSLoss()
    cls = torch.randn(2, 5, 3, requires_grad=True)
    ltrb = (torch.rand(2, 5, 4) * 10).requires_grad_()
    quality = torch.randn(2, 5, requires_grad=True)
    points = torch.rand(5, 2) * 50
    out = loss(cls, ltrb, quality, points, _assigned(torch.full((2, 5), -1), torch.zeros(2, 5, 4)))
    assert all(torch.isfinite(v) for v in out.values())
    assert out["loss_box"].item() == 0 and out["loss_quality"].item() == 0 and out["loss_cls"].item() > 0
    out["loss"].backward()
    for t in (cls, ltrb, quality):
        assert torch.isfinite(t.grad).all()
    assert (ltrb.grad == 0).all() and (quality.grad == 0).all()


def test_low_precision_inputs_give_float32():
    loss = FCOSLoss()
    points = torch.tensor([[10.0, 10.0], [30.0, 30.0]])
    out = loss(
        torch.zeros(1, 2, 2, dtype=torch.bfloat16),
        torch.full((1, 2, 4), 5.0, dtype=torch.bfloat16),
        torch.zeros(1, 2, dtype=torch.bfloat16),
        points,
        _assigned([[1, -1]], [[[5.0, 5.0, 15.0, 15.0], [0, 0, 0, 0]]]),
    )
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
