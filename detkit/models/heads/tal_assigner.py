"""Task-aligned assignment (TOOD, YOLOv8): points whose predictions already fit a box best learn it.

For every (box, point) pair with the point's centre inside the box, the alignment metric
``t = s**alpha * u**beta`` combines the predicted score ``s`` of the box's class and the IoU ``u``
of the predicted box with it. Each box takes its ``topk`` points by ``t``; a point taken by several
boxes keeps the one its prediction overlaps most. A positive's classification target is ``t``
rescaled per box so that the box's best-aligned point gets that box's largest IoU over its positives.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detkit.models.heads.base import AssignedTargets
from detkit.ops.boxes import encode_ltrb, paired_iou

__all__ = ["TaskAlignedAssigner"]


class TaskAlignedAssigner(nn.Module):
    """Batched task-aligned assignment over ``B`` images and ``M`` padded boxes (no Python loops)."""

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9) -> None:
        """Build the assigner.

        Args:
            topk: Points each box takes, the best aligned among those inside it (fewer when fewer are inside).
            alpha: Exponent of the class score in the alignment metric (YOLOv8 0.5, TOOD 1.0).
            beta: Exponent of the IoU in the alignment metric (6.0 in both).
            eps: Keeps the normalisation finite for boxes whose best alignment is zero.
        """
        super().__init__()
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got {alpha}, {beta}")
        self.topk = topk
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.eps = float(eps)

    @torch.no_grad()
    def forward(
        self,
        scores: Tensor,
        pred_boxes: Tensor,
        points: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
        gt_valid: Tensor,
    ) -> AssignedTargets:
        """Assign each point to at most one box (float32, no host synchronisation).

        Args:
            scores: ``[B, P, K]`` predicted class probabilities (after the sigmoid).
            pred_boxes: ``[B, P, 4]`` predicted xyxy boxes in input pixels.
            points: ``[P, 2]`` (x, y) point coordinates in input pixels.
            gt_boxes: ``[B, M, 4]`` xyxy, padded.
            gt_labels: ``[B, M]`` int64 class indices (any value for padding).
            gt_valid: ``[B, M]`` bool, False for padding and boxes that must not make positives.

        Returns:
            The :class:`~detkit.models.heads.base.AssignedTargets` of the ``P`` points of each
            image, ``scores`` the normalised alignment (the assigned class's soft target and the
            positive's loss weight).
        """
        batch, num_points = scores.shape[:2]
        num_boxes = gt_labels.shape[1]
        device = scores.device
        if num_boxes == 0:
            background = torch.full((batch, num_points), -1, dtype=torch.int64, device=device)
            zeros = torch.zeros(batch, num_points, device=device)
            return AssignedTargets(background, zeros.new_zeros(batch, num_points, 4), zeros, background.clone())
        scores, pred_boxes = scores.float(), pred_boxes.float()
        points, gt_boxes = points.float(), gt_boxes.float()
        gt_labels = gt_labels.long().clamp(min=0)

        # (B, M, P): the point's centre inside the box, for real (non-padding, non-crowd) boxes.
        inside = encode_ltrb(points[None, None], gt_boxes[:, :, None]).amin(dim=-1) > 0
        inside &= gt_valid[:, :, None].bool()
        # (B, P, K) -> (B, M, P): each point's score for each box's class.
        class_scores = torch.gather(scores, 2, gt_labels[:, None, :].expand(batch, num_points, num_boxes))
        class_scores = class_scores.transpose(1, 2)
        ious = paired_iou(gt_boxes[:, :, None], pred_boxes[:, None]).clamp(min=0)  # (B, M, P)
        ious = torch.where(inside, ious, torch.zeros_like(ious))
        metric = class_scores.pow(self.alpha) * ious.pow(self.beta)
        metric = torch.where(inside, metric, torch.zeros_like(metric))

        # Top-k points per box; pairs outside the box (metric 0) that fill a short list are dropped.
        top_idx = metric.topk(min(self.topk, num_points), dim=-1).indices  # (B, M, k)
        taken = torch.zeros_like(inside).scatter_(-1, top_idx, True) & inside  # (B, M, P)

        # A point taken by several boxes keeps the one its prediction overlaps most.
        claimed = torch.where(taken, ious, torch.full_like(ious, -1.0))
        gt_index = claimed.argmax(dim=1)  # (B, P)
        positive = taken.any(dim=1)  # (B, P)
        box_ids = torch.arange(num_boxes, device=device)[None, :, None]
        assigned = (box_ids == gt_index[:, None, :]) & positive[:, None, :]  # (B, M, P) one box per point

        # Normalised alignment: t / max_t(box) * max_iou(box), over the box's final positives.
        metric = torch.where(assigned, metric, torch.zeros_like(metric))
        best_metric = metric.amax(dim=-1, keepdim=True)  # (B, M, 1)
        best_iou = torch.where(assigned, ious, torch.zeros_like(ious)).amax(dim=-1, keepdim=True)
        target_scores = (metric * best_iou / (best_metric + self.eps)).amax(dim=1)  # (B, P)

        labels = torch.gather(gt_labels, 1, gt_index)
        labels = torch.where(positive, labels, torch.full_like(labels, -1))
        boxes = torch.gather(gt_boxes, 1, gt_index[..., None].expand(batch, num_points, 4))  # (B, P, 4)
        boxes = torch.where(positive[..., None], boxes, torch.zeros_like(boxes))
        gt_index = torch.where(positive, gt_index, torch.full_like(gt_index, -1))
        return AssignedTargets(labels, boxes, target_scores, gt_index)
