"""Task-aligned losses: IoU-aware classification, GIoU and distribution focal loss, batched in float32.

Every term is weighted by the assigner's normalised alignment and divided by the sum of those
targets (averaged across processes), as in TOOD / YOLOv8 / PP-YOLOE.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.heads.base import AssignedTargets, distributed_mean
from detkit.models.heads.losses import class_targets, positive_box_pairs
from detkit.ops.boxes import decode_ltrb, encode_ltrb, paired_giou_loss

__all__ = ["TaskAlignedLoss", "distribution_focal_loss", "varifocal_loss"]


def distribution_focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """DFL (GFL, Li et al. 2020): cross-entropy towards the two bins around a continuous target.

    Args:
        logits: ``[..., R]`` logits over the bins ``0 .. R-1``.
        target: ``[...]`` distances in bin units, within ``[0, R - 1)``.

    Returns:
        ``[...]`` ``-(r - y) * log p_l - (y - l) * log p_r`` with ``l = floor(y)``, ``r = l + 1``.
    """
    log_probs = F.log_softmax(logits, dim=-1)
    left = target.floor().long()
    right_weight = target - left.to(target.dtype)  # share of the right bin
    log_left = torch.gather(log_probs, -1, left[..., None]).squeeze(-1)
    log_right = torch.gather(log_probs, -1, (left + 1)[..., None]).squeeze(-1)
    return -(1 - right_weight) * log_left - right_weight * log_right


def varifocal_loss(logits: Tensor, target: Tensor, alpha: float = 0.75, gamma: float = 2.0) -> Tensor:
    """Varifocal loss (VarifocalNet, Zhang et al. 2021), elementwise.

    Positives (``target > 0``) get BCE towards ``target`` weighted by ``target``; negatives get BCE
    towards 0 weighted by ``alpha * sigmoid(logits) ** gamma``.

    Args:
        logits: ``[...]`` class logits.
        target: ``[...]`` IoU-aware soft targets in ``[0, 1]``.
        alpha: Weight of negatives.
        gamma: Focusing exponent of negatives.
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = torch.where(target > 0, target, alpha * torch.sigmoid(logits).pow(gamma))
    return bce * weight


class TaskAlignedLoss(nn.Module):
    """``cls_weight * cls + box_weight * GIoU + dfl_weight * DFL``, each over the sum of alignment targets."""

    def __init__(
        self,
        cls_loss: Literal["bce", "varifocal"] = "bce",
        cls_weight: float = 0.5,
        box_weight: float = 7.5,
        dfl_weight: float = 1.5,
        varifocal_alpha: float = 0.75,
        varifocal_gamma: float = 2.0,
    ) -> None:
        """Build the loss.

        Args:
            cls_loss: ``"bce"`` towards the normalised alignment (YOLOv8) or ``"varifocal"``
                (PP-YOLOE, which weights 1.0 / 2.5 / 0.5), over every point and class.
            cls_weight: Weight of the classification loss in the total (the defaults are YOLOv8's).
            box_weight: Weight of the GIoU loss in the total.
            dfl_weight: Weight of the distribution focal loss in the total.
            varifocal_alpha: Weight of negatives in the varifocal loss.
            varifocal_gamma: Focusing exponent of negatives in the varifocal loss.
        """
        super().__init__()
        if cls_loss not in ("bce", "varifocal"):
            raise ValueError(f"cls_loss must be 'bce' or 'varifocal', got {cls_loss!r}")
        if min(cls_weight, box_weight, dfl_weight) < 0:
            raise ValueError(f"loss weights must be >= 0, got {cls_weight}, {box_weight}, {dfl_weight}")
        self.cls_loss = cls_loss
        self.cls_weight = cls_weight
        self.box_weight = box_weight
        self.dfl_weight = dfl_weight
        self.varifocal_alpha = varifocal_alpha
        self.varifocal_gamma = varifocal_gamma

    def forward(
        self,
        cls_logits: Tensor,
        dist_logits: Tensor,
        ltrb: Tensor,
        points: Tensor,
        point_strides: Tensor,
        targets: AssignedTargets,
    ) -> dict[str, Tensor]:
        """Compute the losses (float32 even under autocast; no host synchronisation).

        Args:
            cls_logits: ``(B, P, K)`` class logits.
            dist_logits: ``(B, P, 4, R)`` logits of each side's distance over ``R`` bins of one stride.
            ltrb: ``(B, P, 4)`` the distances they decode to, in input pixels.
            points: ``(P, 2)`` point coordinates.
            point_strides: ``(P,)`` stride of each point's level.
            targets: The assigner's output for these points.

        Returns:
            ``{"loss": total, "loss_cls", "loss_box", "loss_dfl"}`` (components unweighted).
        """
        with torch.autocast(device_type=cls_logits.device.type, enabled=False):
            return self._losses(
                cls_logits.float(), dist_logits.float(), ltrb.float(), points.float(), point_strides.float(), targets
            )

    def _losses(
        self, cls_logits: Tensor, dist_logits: Tensor, ltrb: Tensor, points: Tensor, strides: Tensor,
        targets: AssignedTargets,
    ) -> dict[str, Tensor]:
        labels, weight = targets.labels, targets.scores.float()  # (B, P) each
        positive = labels >= 0
        normaliser = distributed_mean(weight.sum()).clamp(min=1.0)

        # Classification over every point and class: the assigned class's target is the alignment.
        soft = class_targets(labels, cls_logits.shape[-1], weight)  # (B, P, K)
        if self.cls_loss == "bce":
            per_cls = F.binary_cross_entropy_with_logits(cls_logits, soft, reduction="none")
        else:
            per_cls = varifocal_loss(cls_logits, soft, self.varifocal_alpha, self.varifocal_gamma)
        loss_cls = per_cls.sum() / normaliser

        # Boxes on positives only (background rows give zero loss and gradient).
        pred, target = positive_box_pairs(decode_ltrb(points[None], ltrb), targets.boxes.float(), positive)
        loss_box = (paired_giou_loss(pred, target) * weight).sum() / normaliser

        # DFL towards the target distances in stride units, kept inside the bins' range.
        num_bins = dist_logits.shape[-1]
        target_dist = encode_ltrb(points[None], target) / strides[None, :, None]  # (B, P, 4)
        target_dist = target_dist.clamp(min=0.0, max=num_bins - 1 - 0.01)
        dfl = distribution_focal_loss(dist_logits, target_dist).mean(dim=-1)  # (B, P)
        loss_dfl = (dfl * weight).sum() / normaliser

        total = self.cls_weight * loss_cls + self.box_weight * loss_box + self.dfl_weight * loss_dfl
        return {"loss": total, "loss_cls": loss_cls, "loss_box": loss_box, "loss_dfl": loss_dfl}
