"""Box operations: the one place where boxes change encoding (thin wrappers over torchvision.ops).

Tensors go through torchvision (clip boxes with ``torchvision.ops.clip_boxes_to_image``, which takes
``(height, width)``). The numpy conversions of COCO ``[x, y, w, h]`` boxes, :func:`xyxy_to_xywh` and
:func:`xywh_to_xyxy`, are defined in :mod:`detkit.ops.xywh` (importable without torch) and exported
here too. The letterbox mapping between original and input pixels lives in :mod:`detkit.ops.letterbox`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert

from detkit.ops.xywh import xywh_to_xyxy, xyxy_to_xywh

__all__ = [
    "xyxy_to_xywh",
    "xywh_to_xyxy",
    "xyxy_to_cxcywh",
    "cxcywh_to_xyxy",
    "encode_ltrb",
    "decode_ltrb",
    "box_area",
    "paired_iou",
    "paired_giou_loss",
]


def box_area(boxes: Tensor) -> Tensor:
    """Area of ``[..., 4]`` xyxy boxes, zero for degenerate ones -> ``[...]``."""
    wh = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0)
    return wh[..., 0] * wh[..., 1]


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` xyxy -> ``[..., 4]`` centre x, centre y, width, height."""
    return box_convert(boxes, "xyxy", "cxcywh")


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` centre x, centre y, width, height -> ``[..., 4]`` xyxy."""
    return box_convert(boxes, "cxcywh", "xyxy")


def encode_ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """Distances from points to box sides.

    Args:
        points: ``[..., 2]`` (x, y).
        boxes: ``[..., 4]`` xyxy, broadcastable against ``points``.

    Returns:
        ``[..., 4]`` (left, top, right, bottom); all positive iff the point is inside the box.
    """
    lt = points - boxes[..., :2]
    rb = boxes[..., 2:] - points
    return torch.cat((lt, rb), dim=-1)


def decode_ltrb(points: Tensor, ltrb: Tensor) -> Tensor:
    """Inverse of :func:`encode_ltrb`: ``[..., 2]`` points and ``[..., 4]`` distances -> xyxy."""
    return torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), dim=-1)


def _paired_inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Intersection and union areas of matching rows of ``[..., 4]`` xyxy boxes, each ``[...]``."""
    overlap = (torch.minimum(boxes1[..., 2:], boxes2[..., 2:]) - torch.maximum(boxes1[..., :2], boxes2[..., :2])).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]  # not .prod(): its backward checks for zeros on the host
    return inter, box_area(boxes1) + box_area(boxes2) - inter


def paired_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of matching rows of ``[..., 4]`` xyxy boxes -> ``[...]`` (not torchvision's all-pairs matrix)."""
    inter, union = _paired_inter_union(boxes1, boxes2)
    return inter / (union + eps)


def paired_giou_loss(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of matching rows of ``[..., 4]`` xyxy boxes -> ``[...]``.

    The same numbers as ``torchvision.ops.generalized_box_iou_loss(..., reduction="none")``, written
    with clamps instead of its boolean-mask assignment, which makes a GPU wait for the host (a
    ``nonzero``) in every training step.
    """
    inter, union = _paired_inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    enclosing = torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])
    enclosing_area = enclosing[..., 0] * enclosing[..., 1]
    return 1 - (iou - (enclosing_area - union) / (enclosing_area + eps))
