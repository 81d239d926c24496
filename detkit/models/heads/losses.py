"""Loss terms every dense head's loss shares: class targets from an assignment, box pairs without background.

Both are batched over ``B`` images and ``P`` positions with no boolean indexing, so a loss built
from them never synchronises with the host.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["class_targets", "positive_box_pairs"]


def class_targets(labels: Tensor, num_classes: int, scores: Tensor) -> Tensor:
    """Per-class classification targets of assigned positions.

    Args:
        labels: ``Int64Tensor[B, P]`` assigned class, ``-1`` for background.
        num_classes: Number of classes ``K``.
        scores: ``FloatTensor[B, P]`` the assigned class's target (``1`` gives one-hot targets).

    Returns:
        ``FloatTensor[B, P, K]``: ``scores`` at the assigned class, zero elsewhere and on background
        rows. Built by a comparison, not ``F.one_hot``, which checks its input's range on the host
        (a GPU sync).
    """
    classes = torch.arange(num_classes, device=labels.device)
    return (labels[..., None] == classes).float() * scores[..., None]


def positive_box_pairs(pred_boxes: Tensor, target_boxes: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted and assigned boxes for a paired box loss over every position.

    Args:
        pred_boxes: ``FloatTensor[B, P, 4]`` predicted xyxy boxes.
        target_boxes: ``FloatTensor[B, P, 4]`` assigned xyxy boxes (any value for background).
        positive: ``BoolTensor[B, P]`` positions with an assigned box.

    Returns:
        ``pred (B, P, 4)`` and ``target (B, P, 4)`` with the background rows of both replaced by
        the same unit box ``[0, 0, 1, 1]``: a paired loss such as GIoU is finite and constant there
        (about zero) with no gradient, and the zero weight of background removes it, so no
        positions have to be selected.
    """
    unit = torch.tensor([0.0, 0.0, 1.0, 1.0], device=pred_boxes.device).expand_as(pred_boxes)
    mask = positive[..., None]
    return torch.where(mask, pred_boxes, unit), torch.where(mask, target_boxes, unit)
