"""Max-IoU anchor assignment (RetinaNet): an anchor learns the box it overlaps most, above a threshold."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detkit.models.heads.base import AssignedTargets

__all__ = ["MaxIoUAssigner", "IGNORED"]

#: ``AssignedTargets.labels`` of an anchor between the two thresholds: neither positive nor background.
IGNORED = -2


def batched_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of every pair: ``(B, M, 4)`` and ``(N, 4)`` xyxy -> ``(B, M, N)``."""
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])  # (B, M)
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])  # (N,)
    lt = torch.maximum(boxes1[..., None, :2], boxes2[:, :2])  # (B, M, N, 2)
    rb = torch.minimum(boxes1[..., None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[..., None] + area2 - inter)


class MaxIoUAssigner(nn.Module):
    """Each anchor takes the ground-truth box it overlaps most (torchvision's ``Matcher`` for RetinaNet).

    IoU ``>= fg_iou``: positive for that box; ``< bg_iou``: background; in between: ignored (label
    :data:`IGNORED`, no classification loss). With ``allow_low_quality_matches`` every box also gets
    the anchors that overlap it most (ties included) even below ``fg_iou``, so no box is left without
    a positive; unlike torchvision, a box that overlaps no anchor at all gives none. Crowd and padding
    boxes (``gt_valid`` False) match nothing.
    """

    def __init__(self, fg_iou: float = 0.5, bg_iou: float = 0.4, allow_low_quality_matches: bool = True) -> None:
        """Set the thresholds.

        Args:
            fg_iou: Lowest IoU of a positive anchor.
            bg_iou: Anchors whose best IoU is below this are background; ``bg_iou <= fg_iou``.
            allow_low_quality_matches: Also make positive each box's best-overlapping anchors.
        """
        super().__init__()
        if not 0.0 <= bg_iou <= fg_iou <= 1.0:
            raise ValueError(f"need 0 <= bg_iou <= fg_iou <= 1, got bg_iou={bg_iou}, fg_iou={fg_iou}")
        self.fg_iou = fg_iou
        self.bg_iou = bg_iou
        self.allow_low_quality_matches = allow_low_quality_matches

    @torch.no_grad()
    def forward(self, anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor) -> AssignedTargets:
        """Assign every anchor of every image.

        Args:
            anchors: ``(N, 4)`` xyxy anchors in input pixels.
            gt_boxes: ``(B, M, 4)`` padded ground-truth boxes.
            gt_labels: ``(B, M)`` their classes (``-1`` padding).
            gt_valid: ``(B, M)`` False for padding and crowd boxes.

        Returns:
            :class:`AssignedTargets` over the ``N`` anchors: labels ``-1`` background,
            :data:`IGNORED` between the thresholds; ``scores`` 1 for positives.
        """
        batch, num_anchors = gt_boxes.shape[0], anchors.shape[0]
        device = anchors.device
        if gt_boxes.shape[1] == 0:  # no boxes in the batch (all-crowd images need no special case)
            return AssignedTargets(
                labels=torch.full((batch, num_anchors), -1, dtype=torch.int64, device=device),
                boxes=torch.zeros(batch, num_anchors, 4, device=device),
                scores=torch.zeros(batch, num_anchors, device=device),
                gt_index=torch.full((batch, num_anchors), -1, dtype=torch.int64, device=device),
            )
        iou = batched_box_iou(gt_boxes.float(), anchors.float())  # (B, M, N)
        iou = torch.where(gt_valid[..., None], iou, torch.full_like(iou, -1.0))
        best_iou, best_gt = iou.max(dim=1)  # (B, N)
        matched = best_gt.clone()
        matched = torch.where(best_iou < self.fg_iou, torch.full_like(matched, IGNORED), matched)
        matched = torch.where(best_iou < self.bg_iou, torch.full_like(matched, -1), matched)
        if self.allow_low_quality_matches:
            best_per_gt = iou.max(dim=2, keepdim=True).values  # (B, M, 1)
            is_best = (iou == best_per_gt) & gt_valid[..., None] & (best_per_gt > 0)  # (B, M, N)
            matched = torch.where(is_best.any(dim=1), best_gt, matched)
        positive = matched >= 0
        index = matched.clamp(min=0)
        labels = torch.where(positive, gt_labels.gather(1, index), matched)
        boxes = gt_boxes.gather(1, index[..., None].expand(-1, -1, 4)) * positive[..., None]
        return AssignedTargets(
            labels=labels,
            boxes=boxes.float(),
            scores=positive.float(),
            gt_index=torch.where(positive, matched, torch.full_like(matched, -1)),
        )
