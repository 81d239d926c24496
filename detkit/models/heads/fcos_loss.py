"""FCOS losses: focal classification, GIoU box regression and BCE quality, batched in float32."""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from detkit.models.heads.base import AssignedTargets, distributed_mean
from detkit.models.heads.losses import class_targets, positive_box_pairs
from detkit.ops.boxes import decode_ltrb, encode_ltrb, paired_giou_loss, paired_iou

__all__ = ["FCOSLoss", "centerness_target"]


def centerness_target(ltrb: Tensor) -> Tensor:
    """FCOS centre-ness ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` of ``[..., 4]`` -> ``[...]``."""
    ltrb = ltrb.clamp(min=0)
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]  # (..., 2): (l, r) and (t, b)
    ratio = (lr.amin(-1) / lr.amax(-1).clamp(min=1e-6)) * (tb.amin(-1) / tb.amax(-1).clamp(min=1e-6))
    return ratio.clamp(min=0).sqrt()


class FCOSLoss(nn.Module):
    """Sum of focal, GIoU and quality losses, each divided by the number of positive points.

    Positions are weighted by their :class:`~detkit.models.heads.base.AssignedTargets` ``scores``
    (one for each FCOS positive) and the terms divided by the scores' sum. That sum (the number of
    positives) is averaged over the processes of a distributed run
    (:func:`~detkit.models.heads.base.distributed_mean`), so that ``N`` processes of batch ``b``
    compute, after DDP averages their gradients, the gradient of one process of batch ``N * b``.
    """

    def __init__(
        self,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_weight: float = 1.0,
        quality_weight: float = 1.0,
        quality: Literal["centerness", "iou"] = "centerness",
    ) -> None:
        """Build the loss.

        Args:
            focal_alpha: Focal-loss weight of positives (negatives get ``1 - alpha``).
            focal_gamma: Focal-loss focusing exponent.
            box_weight: Weight of the GIoU loss in the total.
            quality_weight: Weight of the quality BCE in the total.
            quality: Quality target: FCOS ``"centerness"`` of the target ltrb, or the (detached)
                ``"iou"`` between predicted and target boxes.
        """
        super().__init__()
        if quality not in ("centerness", "iou"):
            raise ValueError(f"quality must be 'centerness' or 'iou', got {quality!r}")
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_weight = box_weight
        self.quality_weight = quality_weight
        self.quality = quality

    def forward(
        self,
        cls_logits: Tensor,
        ltrb: Tensor,
        quality_logits: Tensor,
        points: Tensor,
        targets: AssignedTargets,
    ) -> dict[str, Tensor]:
        """Compute the losses (float32 whatever the input dtype; no host synchronisation, one
        all-reduce of the positives count per call under ``torch.distributed``).

        Every term weights a position by its assigned ``scores`` (``1`` for each positive of the
        :class:`~detkit.models.FCOSAssigner`, so the normaliser is the number of positives).

        Args:
            cls_logits: ``(B, P, K)`` class logits.
            ltrb: ``(B, P, 4)`` predicted distances in pixels.
            quality_logits: ``(B, P)`` quality logits.
            points: ``(P, 2)`` point coordinates.
            targets: The assigner's output for these points.

        Returns:
            ``{"loss": total, "loss_cls", "loss_box", "loss_quality"}`` (components unweighted).
        """
        cls_logits, ltrb, quality_logits = cls_logits.float(), ltrb.float(), quality_logits.float()
        points, weight = points.float(), targets.scores.float()  # (P, 2), (B, P)
        positive = targets.labels >= 0  # (B, P)
        num_pos = distributed_mean(weight.sum()).clamp(min=1.0)  # same normaliser on every process

        # Classification over every point: one-hot targets, all zeros for background (label -1).
        onehot = class_targets(targets.labels, cls_logits.shape[-1], weight)  # (B, P, K)
        loss_cls = sigmoid_focal_loss(
            cls_logits, onehot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="sum"
        ) / num_pos

        # Box regression on positives only (background rows give zero loss and gradient).
        pred, target = positive_box_pairs(decode_ltrb(points[None], ltrb), targets.boxes.float(), positive)
        loss_box = (paired_giou_loss(pred, target) * weight).sum() / num_pos

        # Quality (centre-ness or IoU) as a BCE on positives.
        if self.quality == "centerness":
            target_q = centerness_target(encode_ltrb(points[None], target))
        else:
            target_q = paired_iou(pred.detach(), target)
        bce = F.binary_cross_entropy_with_logits(quality_logits, target_q, reduction="none")  # (B, P)
        loss_quality = (bce * weight).sum() / num_pos

        total = loss_cls + self.box_weight * loss_box + self.quality_weight * loss_quality
        return {"loss": total, "loss_cls": loss_cls, "loss_box": loss_box, "loss_quality": loss_quality}
