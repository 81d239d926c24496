"""A minimal extra dense head, written outside detkit: it plugs into ``Detector``, the CLI and checkpoints.

``PointHead`` is a few lines (one conv per output, the FCOS assigner reused, focal + L1 losses,
top-k decoding). It is importable as ``extra_head.PointHead`` once ``tests/support`` is on the path,
so a YAML config can name it (``class_path: extra_head.PointHead``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from detkit.models import DenseHead, FCOSAssigner, FeatureInfo, batch_targets, make_points
from detkit.models.heads.base import distributed_mean
from detkit.types import Detections, Target

__all__ = ["PointHead"]


class PointHead(DenseHead):
    """Per point: class logits ``[K]`` and ``ltrb`` distances; decoded as the top ``top_k`` (point, class) pairs."""

    def __init__(
        self,
        in_features: Sequence[FeatureInfo],
        num_classes: int,
        top_k: int = 5,
        score_threshold: float = 0.0,
    ) -> None:
        """Build the two convs.

        Args:
            in_features: The neck's levels (all with the same channels).
            num_classes: Number of foreground classes.
            top_k: Detections kept per image before the score threshold.
            score_threshold: Detections scoring at or below this are dropped.
        """
        super().__init__(in_features, num_classes)
        channels = self.in_features[0].channels
        self.cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.assigner = FCOSAssigner()
        self.top_k, self.score_threshold = top_k, score_threshold

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        cls = torch.cat([self.cls(f).flatten(2).transpose(1, 2) for f in features], 1)  # (B, P, K)
        ltrb = [F.relu(self.box(f)).flatten(2).transpose(1, 2) * s for f, s in zip(features, self.strides)]
        ltrb = torch.cat(ltrb, 1)  # (B, P, 4) pixels
        points, strides = make_points([f.shape[-2:] for f in features], self.strides, device=cls.device)
        return {"cls": cls, "ltrb": ltrb, "points": points, "point_strides": strides}

    def loss(self, outputs: dict[str, Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        gt = batch_targets(targets, outputs["cls"].device)
        assigned = self.assigner(outputs["points"], outputs["point_strides"], *gt)  # AssignedTargets
        labels, boxes = assigned.labels, assigned.boxes
        pos = (labels >= 0).float()
        num_pos = distributed_mean(pos.sum()).clamp(min=1)  # the same normaliser on every DDP process
        onehot = (labels[..., None] == torch.arange(self.num_classes, device=labels.device)).float()
        loss_cls = sigmoid_focal_loss(outputs["cls"], onehot, reduction="sum") / num_pos
        target_ltrb = torch.cat((outputs["points"] - boxes[..., :2], boxes[..., 2:] - outputs["points"]), -1)
        loss_box = ((outputs["ltrb"] - target_ltrb).abs().sum(-1) * pos).sum() / num_pos / 32
        return {"loss": loss_cls + loss_box, "loss_cls": loss_cls, "loss_box": loss_box}

    def predict(
        self, outputs: dict[str, Tensor], image_size: tuple[int, int], score_threshold: float | None = None
    ) -> list[Detections]:
        threshold = self.score_threshold if score_threshold is None else score_threshold
        k = min(self.top_k, outputs["cls"][0].numel())
        scores, index = outputs["cls"].sigmoid().flatten(1).topk(k)  # (B, k) over P * K, descending
        point, label = index // self.num_classes, index % self.num_classes
        ltrb = torch.gather(outputs["ltrb"], 1, point[..., None].expand(-1, -1, 4))
        boxes = torch.cat((outputs["points"][point] - ltrb[..., :2], outputs["points"][point] + ltrb[..., 2:]), -1)
        boxes = boxes.clamp(min=0).minimum(boxes.new_tensor([image_size[1], image_size[0]] * 2))
        level = torch.bucketize(outputs["point_strides"][point], point.new_tensor(self.strides, dtype=torch.float32))
        return [
            {"boxes": b[keep], "scores": s[keep], "labels": lab[keep], "point_index": p[keep], "level": lvl[keep]}
            for b, s, lab, p, lvl in zip(boxes, scores, label, point, level)
            for keep in [s > threshold]
        ]
