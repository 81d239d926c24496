"""RetinaNet losses: focal classification over non-ignored anchors, GIoU or L1 box regression on positives."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from detkit.models.heads.base import AssignedTargets, distributed_mean
from detkit.models.heads.iou_assigner import IGNORED
from detkit.models.heads.losses import class_targets, positive_box_pairs
from detkit.ops.boxes import decode_deltas, encode_deltas, paired_giou_loss

__all__ = ["RetinaNetLoss"]


class RetinaNetLoss(nn.Module):
    """Focal loss over every anchor that is not ignored plus a box loss on positives, each divided
    by the number of positive anchors in the batch (averaged over processes, as :class:`FCOSLoss`).

    torchvision normalises per image and then averages the images; over a batch the two differ
    only in how images with many and few objects are weighted.
    """

    def __init__(
        self,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_loss: Literal["giou", "l1"] = "giou",
        box_weight: float = 1.0,
    ) -> None:
        """Build the loss.

        Args:
            focal_alpha: Focal-loss weight of positives (negatives get ``1 - alpha``).
            focal_gamma: Focal-loss focusing exponent.
            box_loss: ``"giou"`` on the decoded boxes (``retinanet_resnet50_fpn_v2``) or ``"l1"``
                on the anchor deltas (the original RetinaNet, torchvision's v1).
            box_weight: Weight of the box loss in the total.
        """
        super().__init__()
        if box_loss not in ("giou", "l1"):
            raise ValueError(f"box_loss must be 'giou' or 'l1', got {box_loss!r}")
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma
        self.box_loss = box_loss
        self.box_weight = box_weight

    def forward(self, cls_logits: Tensor, box_deltas: Tensor, anchors: Tensor, targets: AssignedTargets) -> dict[str, Tensor]:
        """Compute the losses in float32 (no host synchronisation).

        Args:
            cls_logits: ``(B, N, K)`` class logits.
            box_deltas: ``(B, N, 4)`` predicted ``(dx, dy, dw, dh)``.
            anchors: ``(N, 4)`` xyxy anchors.
            targets: The assigner's output for these anchors.

        Returns:
            ``{"loss": total, "loss_cls", "loss_box"}`` (components unweighted).
        """
        cls_logits, box_deltas, anchors = cls_logits.float(), box_deltas.float(), anchors.float()
        positive = targets.labels >= 0  # (B, N)
        counted = (targets.labels != IGNORED).float()  # (B, N): positives and background
        num_pos = distributed_mean(positive.sum().float()).clamp(min=1.0)

        onehot = class_targets(targets.labels, cls_logits.shape[-1], targets.scores.float())  # (B, N, K)
        focal = sigmoid_focal_loss(cls_logits, onehot, alpha=self.focal_alpha, gamma=self.focal_gamma, reduction="none")
        loss_cls = (focal * counted[..., None]).sum() / num_pos

        weight = positive.float()
        if self.box_loss == "giou":
            pred, target = positive_box_pairs(decode_deltas(anchors[None], box_deltas), targets.boxes.float(), positive)
            loss_box = (paired_giou_loss(pred, target) * weight).sum() / num_pos
        else:
            # Background rows encode their own anchor (zero deltas, finite) and weigh zero.
            target_boxes = torch.where(positive[..., None], targets.boxes.float(), anchors[None].expand_as(box_deltas))
            target_deltas = encode_deltas(anchors[None], target_boxes)
            loss_box = ((box_deltas - target_deltas).abs().sum(-1) * weight).sum() / num_pos

        total = loss_cls + self.box_weight * loss_box
        return {"loss": total, "loss_cls": loss_cls, "loss_box": loss_box}
