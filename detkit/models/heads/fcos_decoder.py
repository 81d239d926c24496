"""Dense-head decoding: raw outputs -> per-image detections (score, top-k per level, decode, clip, class-aware NMS).

Written for FCOS and shared by every head that predicts per point class logits and ltrb distances
(the :class:`~detkit.models.TaskAlignedHead` passes no quality logits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from detkit.ops.boxes import clip_boxes, decode_ltrb
from detkit.types import Detections

__all__ = ["FCOSDecoder"]


class FCOSDecoder(nn.Module):
    """Inference decoding with ``score = sqrt(sigmoid(cls) * sigmoid(quality))``, or ``sigmoid(cls)``
    without quality logits; keeps each detection's point."""

    def __init__(
        self,
        score_threshold: float = 0.05,
        topk_per_level: int = 1000,
        nms_iou: float = 0.6,
        max_detections: int = 100,
    ) -> None:
        """Build the decoder.

        Args:
            score_threshold: Candidates scoring at or below this are dropped before NMS.
            topk_per_level: Candidates (point, class pairs) kept per pyramid level before NMS.
            nms_iou: IoU above which a lower-scoring box of the same class is suppressed.
            max_detections: Detections kept per image after NMS.
        """
        super().__init__()
        if topk_per_level < 1 or max_detections < 1:
            raise ValueError(
                f"topk_per_level and max_detections must be >= 1, got {topk_per_level}, {max_detections}"
            )
        self.score_threshold = score_threshold
        self.topk_per_level = topk_per_level
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    @torch.no_grad()
    def forward(
        self,
        cls_logits: Tensor,
        ltrb: Tensor,
        quality_logits: Tensor | None,
        points: Tensor,
        point_strides: Tensor,
        image_size: tuple[int, int],
        score_threshold: float | None = None,
    ) -> list[Detections]:
        """Select detections for each image of the batch.

        Args:
            cls_logits: ``(B, P, K)`` class logits.
            ltrb: ``(B, P, 4)`` distances in pixels.
            quality_logits: ``(B, P)`` quality logits, or ``None`` for heads whose class scores
                already rank localisation quality (scores are then ``sigmoid(cls)``).
            points: ``(P, 2)`` point coordinates, levels contiguous.
            point_strides: ``(P,)`` stride per point (used to split levels).
            image_size: ``(height, width)`` boxes are clipped to.
            score_threshold: Overrides the configured threshold when given.

        Returns:
            One :class:`~detkit.types.Detections` per image, sorted by descending score, with the
            ``point_index`` (into the ``P`` points) and ``level`` (index of the run of equal
            ``point_strides``) of each detection.
        """
        threshold = self.score_threshold if score_threshold is None else score_threshold
        batch, _, num_classes = cls_logits.shape
        scores = torch.sigmoid(cls_logits.float())  # (B, P, K)
        if quality_logits is not None:
            scores = torch.sqrt(scores * torch.sigmoid(quality_logits.float())[..., None])
        boxes = clip_boxes(decode_ltrb(points[None].float(), ltrb.float()), image_size)  # (B, P, 4)
        # Level sizes from the contiguous runs of equal strides (inference only, a sync is fine).
        _, counts = torch.unique_consecutive(point_strides, return_counts=True)
        cand_scores, cand_points, cand_labels, cand_levels = [], [], [], []
        start = 0
        for level_index, count in enumerate(counts.tolist()):
            level_scores = scores[:, start : start + count].reshape(batch, -1)  # (B, P_l * K)
            k = min(self.topk_per_level, level_scores.shape[1])
            top_scores, top_idx = level_scores.topk(k, dim=1)  # (B, k)
            cand_scores.append(top_scores)
            cand_points.append(top_idx // num_classes + start)
            cand_labels.append(top_idx % num_classes)
            cand_levels.append(torch.full_like(top_idx, level_index))
            start += count
        all_scores = torch.cat(cand_scores, dim=1)  # (B, C)
        all_points = torch.cat(cand_points, dim=1)
        all_labels = torch.cat(cand_labels, dim=1)
        all_levels = torch.cat(cand_levels, dim=1)

        results: list[Detections] = []
        for b in range(batch):
            s, p, lab, lvl = all_scores[b], all_points[b], all_labels[b], all_levels[b]
            bx = boxes[b, p]
            keep = (s > threshold) & (bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])
            s, bx, lab, p, lvl = s[keep], bx[keep], lab[keep], p[keep], lvl[keep]
            keep = batched_nms(bx, s, lab, self.nms_iou)[: self.max_detections]  # sorted by score
            results.append(
                Detections(
                    boxes=bx[keep],
                    scores=s[keep],
                    labels=lab[keep].long(),
                    point_index=p[keep].long(),
                    level=lvl[keep].long(),
                )
            )
        return results
