"""Tests for detkit.models.heads.tal_loss: exact values on hand-made cases."""

import math

import pytest
import torch

from detkit.models import TaskAlignedLoss
from detkit.models.heads import AssignedTargets, distribution_focal_loss, expected_distance, varifocal_loss
from detkit.models.heads import tal_loss


def test_distribution_focal_loss_on_a_hand_case():
    logits = torch.log(torch.tensor([1.0, 2.0, 3.0, 1.0]))  # probabilities 1/7, 2/7, 3/7, 1/7
    loss = distribution_focal_loss(logits.expand(3, 4), torch.tensor([1.25, 2.0, 0.0]))
    expected = torch.tensor([
        -0.75 * math.log(2 / 7) - 0.25 * math.log(3 / 7),  # between bins 1 and 2
        -math.log(3 / 7),  # exactly on bin 2
        -math.log(1 / 7),  # exactly on bin 0
    ])  # fmt: skip
    torch.testing.assert_close(loss, expected)


def test_varifocal_loss_weights():
    logits = torch.tensor([0.0, 0.0, math.log(3.0)])  # p = .5, .5, .75
    target = torch.tensor([0.6, 0.0, 0.0])
    loss = varifocal_loss(logits, target, alpha=0.75, gamma=2.0)
    bce_pos = -(0.6 * math.log(0.5) + 0.4 * math.log(0.5))
    expected = torch.tensor([0.6 * bce_pos, 0.75 * 0.25 * math.log(2.0), 0.75 * 0.75**2 * -math.log(0.25)])
    torch.testing.assert_close(loss, expected)


def _case(score=0.5):
    """Two points of stride 8; point 0 learns class 1 and box [0, 0, 16, 16] with alignment ``score``."""
    cls_logits = torch.zeros(1, 2, 2)
    dist_logits = torch.zeros(1, 2, 4, 4)  # uniform over 4 bins: 1.5 strides = 12 px per side
    ltrb = expected_distance(dist_logits) * 8
    points = torch.tensor([[8.0, 8.0], [24.0, 8.0]])
    strides = torch.tensor([8.0, 8.0])
    targets = AssignedTargets(
        labels=torch.tensor([[1, -1]]),
        boxes=torch.tensor([[[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 0.0, 0.0]]]),
        scores=torch.tensor([[score, 0.0]]),
        gt_index=torch.tensor([[0, -1]]),
    )
    return cls_logits, dist_logits, ltrb, points, strides, targets


def test_losses_exact_on_a_hand_case():
    losses = TaskAlignedLoss()(*_case(0.5))
    # BCE at logit 0 is ln 2 for any target: 4 entries; normaliser max(0.5, 1) = 1.
    torch.testing.assert_close(losses["loss_cls"], torch.tensor(4 * math.log(2.0)))
    # Predicted [-4, -4, 20, 20] contains the target: IoU 256/576 = GIoU, weight 0.5.
    torch.testing.assert_close(losses["loss_box"], torch.tensor(0.5 * (1 - 256 / 576)))
    # Target distances are 8 px = bin 1 exactly: -ln(1/4) per side, weight 0.5.
    torch.testing.assert_close(losses["loss_dfl"], torch.tensor(0.5 * math.log(4.0)))
    total = 0.5 * losses["loss_cls"] + 7.5 * losses["loss_box"] + 1.5 * losses["loss_dfl"]
    torch.testing.assert_close(losses["loss"], total)

    vfl = TaskAlignedLoss(cls_loss="varifocal", cls_weight=2.0, box_weight=0.0, dfl_weight=0.0)(*_case(0.5))
    # Positive entry ln2 * 0.5; three negatives ln2 * 0.75 * 0.5**2.
    torch.testing.assert_close(vfl["loss_cls"], torch.tensor(math.log(2.0) * (0.5 + 3 * 0.1875)))
    torch.testing.assert_close(vfl["loss"], 2 * vfl["loss_cls"])


def test_normaliser_is_the_alignment_sum_averaged_across_processes(monkeypatch):
    base = TaskAlignedLoss()(*_case(1.0))  # sum 1: divides by 1
    seen = []

    def doubled(value):  # stands for a process whose partner holds three times the alignment
        seen.append(value.clone())
        return value * 2

    monkeypatch.setattr(tal_loss, "distributed_mean", doubled)
    halved = TaskAlignedLoss()(*_case(1.0))
    assert len(seen) == 1 and seen[0].item() == 1.0
    for key in base:
        torch.testing.assert_close(halved[key], base[key] / 2)


def test_background_rows_give_finite_gradients_and_float32_under_autocast():
    cls_logits, dist_logits, _, points, strides, targets = _case(0.7)
    dist_logits = dist_logits.clone().requires_grad_(True)
    cls_logits = cls_logits.clone().requires_grad_(True)
    losses = TaskAlignedLoss()(cls_logits, dist_logits, expected_distance(dist_logits) * 8, points, strides, targets)
    losses["loss"].backward()
    assert torch.isfinite(dist_logits.grad).all() and torch.isfinite(cls_logits.grad).all()
    assert (dist_logits.grad[0, 1] == 0).all()  # background point: no box gradient

    half = [t.bfloat16() for t in _case(0.7)[:3]]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = TaskAlignedLoss()(*half, points, strides, targets)
    full = TaskAlignedLoss()(*[t.float() for t in half], points, strides, targets)
    for key in full:
        assert mixed[key].dtype == torch.float32
        torch.testing.assert_close(mixed[key], full[key], rtol=0, atol=0)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="cls_loss"):
        TaskAlignedLoss(cls_loss="focal")
    with pytest.raises(ValueError, match="weights"):
        TaskAlignedLoss(box_weight=-1.0)
