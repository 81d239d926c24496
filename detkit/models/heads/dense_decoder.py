"""Dense decoding: per-position class scores and boxes -> per-image detections (top-k per level, threshold, NMS).

:class:`DenseDecoder` serves every dense head: the head turns its raw outputs into ``scores (B, P, K)``
and boxes ``(B, P, 4)`` clipped to the image (see
:meth:`~detkit.models.heads.base.ComposedDenseHead.scores_and_boxes`: points and ltrb distances for
FCOS and the task-aligned head; anchors and deltas for an anchor head), and the decoder selects the
detections. :meth:`DenseDecoder.forward` returns ragged per-image detections; :meth:`DenseDecoder.padded`
selects the same detections with fixed-shape tensor ops only (what ONNX and TorchScript exports run).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from detkit.ops.nms import nms_per_image
from detkit.types import Detections

__all__ = ["DenseDecoder"]


class DenseDecoder(nn.Module):
    """Inference decoding of dense per-position scores and boxes; keeps each detection's position and level."""

    def __init__(
        self,
        score_threshold: float = 0.05,
        topk_per_level: int = 1000,
        nms_iou: float = 0.6,
        max_detections: int = 100,
        pre_nms_topk: int | None = None,
    ) -> None:
        """Build the decoder.

        Args:
            score_threshold: Candidates scoring at or below this are dropped before NMS.
            topk_per_level: Candidates (position, class pairs) kept per pyramid level before NMS.
            nms_iou: IoU above which a lower-scoring box of the same class is suppressed.
            max_detections: Detections kept per image after NMS.
            pre_nms_topk: At most this many of an image's candidates above the threshold (the
                highest-scoring) enter NMS; ``None``: all. Exported graphs always run NMS on
                this many candidates per image (all ``topk_per_level`` ones for ``None``), so a
                cap makes their NMS cheaper.
        """
        super().__init__()
        if min(topk_per_level, max_detections, pre_nms_topk or 1) < 1:
            raise ValueError(
                "topk_per_level, max_detections and pre_nms_topk must be >= 1, got "
                f"{topk_per_level}, {max_detections}, {pre_nms_topk}"
            )
        self.pre_nms_topk = pre_nms_topk
        self.score_threshold = score_threshold
        self.topk_per_level = topk_per_level
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    @torch.no_grad()
    def forward(
        self, scores: Tensor, boxes: Tensor, level_sizes: Sequence[int], score_threshold: float | None = None
    ) -> list[Detections]:
        """Select detections for each image of the batch.

        Args:
            scores: ``(B, P, K)`` class scores in ``[0, 1]``.
            boxes: ``(B, P, 4)`` xyxy boxes in input pixels, clipped to the image.
            level_sizes: Positions per pyramid level; the ``P`` positions are the levels' in order.
            score_threshold: Overrides the configured threshold when given.

        Returns:
            One :class:`~detkit.types.Detections` per image, sorted by descending score, with the
            ``point_index`` (into the ``P`` positions) and ``level`` (index into ``level_sizes``) of
            each detection.
        """
        threshold = self.score_threshold if score_threshold is None else score_threshold
        all_scores, all_boxes, all_labels, all_points, all_levels = self._candidates(scores, boxes, level_sizes)
        results: list[Detections] = []
        for b in range(all_scores.shape[0]):
            s, bx, lab, p, lvl = all_scores[b], all_boxes[b], all_labels[b], all_points[b], all_levels[b]
            keep = (s > threshold) & (bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])
            s, bx, lab, p, lvl = s[keep], bx[keep], lab[keep], p[keep], lvl[keep]
            if self.pre_nms_topk is not None and s.shape[0] > self.pre_nms_topk:
                keep = s.topk(self.pre_nms_topk).indices
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

    def _candidates(
        self, scores: Tensor, boxes: Tensor, level_sizes: Sequence[int]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The top ``topk_per_level`` (position, class) pairs of each level.

        Returns:
            ``scores (B, C)``, ``boxes (B, C, 4)``, ``labels (B, C)``, ``point_index (B, C)`` and
            ``level (B, C)`` of the ``C`` candidates (levels in order, by score within a level).
        """
        batch, _, num_classes = scores.shape
        cand_scores, cand_points, cand_labels, cand_levels = [], [], [], []
        start = 0
        for level_index, count in enumerate(level_sizes):
            level_scores = scores[:, start : start + count].reshape(batch, -1)  # (B, P_l * K)
            k = min(self.topk_per_level, count * num_classes)
            top_scores, top_idx = level_scores.topk(k, dim=1)  # (B, k)
            cand_scores.append(top_scores)
            cand_points.append(top_idx // num_classes + start)
            cand_labels.append(top_idx % num_classes)
            cand_levels.append(torch.full_like(top_idx, level_index))
            start += count
        point_index = torch.cat(cand_points, dim=1)  # (B, C)
        cand_boxes = boxes.gather(1, point_index[..., None].expand(-1, -1, 4))  # (B, C, 4)
        return (
            torch.cat(cand_scores, dim=1), cand_boxes, torch.cat(cand_labels, dim=1), point_index, torch.cat(cand_levels, dim=1)
        )  # fmt: skip

    @torch.no_grad()
    def padded(
        self,
        scores: Tensor,
        boxes: Tensor,
        level_sizes: Sequence[int],
        image_size: tuple[int, int],
        score_threshold: float | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The detections of :meth:`forward` as fixed-shape tensors, without data-dependent shapes.

        NMS runs per image (:func:`~detkit.ops.nms.nms_per_image`, one ONNX ``NonMaxSuppression``
        with the batch as its batch axis) and per class by shifting the boxes of class ``k`` by
        ``k * (S + 1)`` in x, so boxes of different classes never overlap (``batched_nms``' offset
        trick), stopping once ``max_detections`` boxes survive (greedy NMS keeps in descending score,
        so those are the ones :meth:`forward` returns). Candidates below the threshold get score
        ``-1`` and take no part.

        Args:
            scores, boxes, score_threshold: As :meth:`forward`.
            level_sizes: Positions per pyramid level, fixed for a fixed input size.
            image_size: ``(height, width)`` the boxes are clipped to (``S`` is its larger side).

        Returns:
            ``boxes (B, D, 4)``, ``scores (B, D)`` (descending), ``labels (B, D)`` int64 and
            ``num_detections (B,)`` int64 with ``D = max_detections``; entries past an image's count
            are zero (labels ``-1``).
        """
        threshold = self.score_threshold if score_threshold is None else score_threshold
        scores, boxes, labels, _, _ = self._candidates(scores, boxes, level_sizes)
        valid = (scores > threshold) & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
        masked = torch.where(valid, scores, torch.full_like(scores, -1.0))  # (B, C)
        masked, order = masked.topk(min(self.pre_nms_topk or masked.shape[1], masked.shape[1]), dim=1)  # (B, N)
        boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
        labels = labels.gather(1, order)
        num = masked.shape[1]
        shift_x = labels.to(boxes.dtype)[..., None] * float(max(image_size) + 1)  # (B, N, 1)
        shifted = boxes + torch.cat((shift_x, torch.zeros_like(shift_x)), dim=-1).repeat(1, 1, 2)
        kept = nms_per_image(shifted, masked, self.nms_iou, self.max_detections)  # (B, N) bool, the top D survivors
        final = torch.where(kept, masked, torch.full_like(masked, -1.0))
        top_scores, top = final.topk(min(self.max_detections, num), dim=1)  # (B, D')
        found = top_scores >= 0
        pad = self.max_detections - top.shape[1]
        out_boxes = torch.where(found[..., None], boxes.gather(1, top[..., None].expand(-1, -1, 4)), 0.0)
        out_scores = torch.where(found, top_scores, 0.0)
        out_labels = torch.where(found, labels.gather(1, top), -1)
        if pad:
            out_boxes = torch.nn.functional.pad(out_boxes, (0, 0, 0, pad))
            out_scores = torch.nn.functional.pad(out_scores, (0, pad))
            out_labels = torch.nn.functional.pad(out_labels, (0, pad), value=-1)
        return out_boxes, out_scores, out_labels, found.sum(dim=1)
