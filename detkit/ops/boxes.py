"""Box operations: the one place where boxes change encoding (thin wrappers over torchvision.ops).

Tensors go through torchvision (clip boxes with ``torchvision.ops.clip_boxes_to_image``, which takes
``(height, width)``). The numpy conversions of COCO ``[x, y, w, h]`` boxes, :func:`xyxy_to_xywh` and
:func:`xywh_to_xyxy`, are defined in :mod:`detkit.ops.xywh` (importable without torch) and exported
here too. The letterbox mapping between original and input pixels lives in :mod:`detkit.ops.letterbox`.
"""

from __future__ import annotations

import math

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
    "encode_deltas",
    "decode_deltas",
    "DELTA_CLIP",
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


#: Largest width/height delta :func:`decode_deltas` exponentiates: boxes at most 62.5x their anchor
#: (torchvision's ``BoxCoder.bbox_xform_clip``), so an untrained output cannot overflow ``exp``.
DELTA_CLIP = math.log(1000.0 / 16)


def encode_deltas(anchors: Tensor, boxes: Tensor) -> Tensor:
    """Boxes relative to anchors, the R-CNN / RetinaNet coding (torchvision's ``BoxCoder`` with unit weights).

    Args:
        anchors: ``[..., 4]`` xyxy reference boxes of positive width and height.
        boxes: ``[..., 4]`` xyxy boxes, broadcastable against ``anchors``.

    Returns:
        ``[..., 4]`` ``(dx, dy, dw, dh)``: centre offsets in anchor widths/heights and log size ratios.
    """
    wa, ha = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    xa, ya = anchors[..., 0] + 0.5 * wa, anchors[..., 1] + 0.5 * ha
    w, h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    x, y = boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h
    return torch.stack(((x - xa) / wa, (y - ya) / ha, torch.log(w / wa), torch.log(h / ha)), dim=-1)


def decode_deltas(anchors: Tensor, deltas: Tensor, clip: float = DELTA_CLIP) -> Tensor:
    """Inverse of :func:`encode_deltas` (the same float operations as torchvision's ``BoxCoder.decode_single``).

    Args:
        anchors: ``[..., 4]`` xyxy reference boxes.
        deltas: ``[..., 4]`` ``(dx, dy, dw, dh)``, broadcastable against ``anchors``.
        clip: ``dw`` and ``dh`` are clamped to at most this before ``exp``.

    Returns:
        ``[..., 4]`` xyxy boxes.
    """
    anchors = anchors.to(deltas.dtype)
    wa, ha = anchors[..., 2] - anchors[..., 0], anchors[..., 3] - anchors[..., 1]
    xa, ya = anchors[..., 0] + 0.5 * wa, anchors[..., 1] + 0.5 * ha
    dx, dy, dw, dh = deltas.unbind(-1)
    x, y = dx * wa + xa, dy * ha + ya
    half_w, half_h = 0.5 * (torch.exp(dw.clamp(max=clip)) * wa), 0.5 * (torch.exp(dh.clamp(max=clip)) * ha)
    return torch.stack((x - half_w, y - half_h, x + half_w, y + half_h), dim=-1)


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
