"""FCOS target assignment: which ground-truth box (if any) each point regresses, batched."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detkit.models.heads.base import AssignedTargets
from detkit.ops.boxes import box_area, encode_ltrb

__all__ = ["FCOSAssigner"]


class FCOSAssigner(nn.Module):
    """Batched FCOS assignment with centre sampling and per-level size ranges (no Python loops)."""

    def __init__(self, center_sampling_radius: float = 1.5, size_multiplier: float = 8.0) -> None:
        """Build the assigner.

        Args:
            center_sampling_radius: A point is positive only inside a square of half-side
                ``radius * stride`` around the box centre (clipped to the box); ``0`` disables
                centre sampling (any point inside the box).
            size_multiplier: A level of stride ``s`` regresses boxes whose largest point-to-side
                distance lies in ``(s * m / 2, s * m]``; the finest level starts at 0 and the
                coarsest extends to infinity (``m = 8`` gives FCOS's 64/128/256/512 limits).
        """
        super().__init__()
        if center_sampling_radius < 0:
            raise ValueError(f"center_sampling_radius must be >= 0, got {center_sampling_radius}")
        if size_multiplier <= 0:
            raise ValueError(f"size_multiplier must be > 0, got {size_multiplier}")
        self.center_sampling_radius = float(center_sampling_radius)
        self.size_multiplier = float(size_multiplier)

    def size_ranges(self, point_strides: Tensor) -> tuple[Tensor, Tensor]:
        """Per point ``(lower, upper)`` limits on ``max(l, t, r, b)``, each ``[P]``.

        Levels are told apart by stride: the smallest stride gets ``lower = 0`` and the largest
        ``upper = inf`` (computed on device, no host sync).
        """
        lower = point_strides * (self.size_multiplier / 2)
        upper = point_strides * self.size_multiplier
        lower = torch.where(point_strides == point_strides.min(), torch.zeros_like(lower), lower)
        upper = torch.where(point_strides == point_strides.max(), torch.full_like(upper, float("inf")), upper)
        return lower, upper

    @torch.no_grad()
    def forward(
        self, points: Tensor, point_strides: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_valid: Tensor
    ) -> AssignedTargets:
        """Assign each point to at most one box.

        Args:
            points: ``[P, 2]`` (x, y) point coordinates in input pixels.
            point_strides: ``[P]`` stride of each point's level.
            gt_boxes: ``[B, M, 4]`` xyxy, padded.
            gt_labels: ``[B, M]`` int64 class indices.
            gt_valid: ``[B, M]`` bool, False for padding (and boxes that must not make positives).

        Returns:
            The :class:`~detkit.models.heads.base.AssignedTargets` of the ``P`` points of each
            image, ``scores`` one for positives. Ties between candidate boxes go to the smallest area.
        """
        batch, num_boxes = gt_labels.shape
        num_points = points.shape[0]
        if num_boxes == 0:
            background = torch.full((batch, num_points), -1, dtype=torch.int64, device=points.device)
            zeros = points.new_zeros(batch, num_points)
            return AssignedTargets(background, points.new_zeros(batch, num_points, 4), zeros, background.clone())
        gt_boxes = gt_boxes.to(points.dtype)
        boxes = gt_boxes[:, None, :, :]  # (B, 1, M, 4)
        pts = points[None, :, None, :]  # (1, P, 1, 2)
        ltrb = encode_ltrb(pts, boxes)  # (B, P, M, 4)
        candidate = ltrb.amin(dim=-1) > 0  # (B, P, M) inside the box
        if self.center_sampling_radius > 0:
            centres = (boxes[..., :2] + boxes[..., 2:]) / 2  # (B, 1, M, 2)
            radius = (point_strides * self.center_sampling_radius)[None, :, None, None]  # (1, P, 1, 1)
            region = torch.cat(
                (torch.maximum(centres - radius, boxes[..., :2]), torch.minimum(centres + radius, boxes[..., 2:])),
                dim=-1,
            )  # (B, P, M, 4) centre region clipped to the box
            candidate &= encode_ltrb(pts, region).amin(dim=-1) > 0
        max_dist = ltrb.amax(dim=-1)  # (B, P, M)
        lower, upper = self.size_ranges(point_strides.to(points.dtype))
        candidate &= (max_dist > lower[None, :, None]) & (max_dist <= upper[None, :, None])
        candidate &= gt_valid[:, None, :].bool()

        areas = box_area(gt_boxes)[:, None, :].expand(batch, num_points, num_boxes)  # (B, P, M)
        areas = torch.where(candidate, areas, torch.full_like(areas, float("inf")))
        best = areas.argmin(dim=-1)  # (B, P) first smallest-area candidate
        positive = candidate.any(dim=-1)  # (B, P)
        labels = torch.gather(gt_labels.long(), 1, best)
        labels = torch.where(positive, labels, torch.full_like(labels, -1))
        matched = torch.gather(gt_boxes, 1, best[..., None].expand(batch, num_points, 4))  # (B, P, 4)
        matched = torch.where(positive[..., None], matched, torch.zeros_like(matched))
        gt_index = torch.where(positive, best, torch.full_like(best, -1))
        return AssignedTargets(labels, matched, positive.to(points.dtype), gt_index)
