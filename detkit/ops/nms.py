"""Per-image NMS over fixed-shape candidate tensors, as one registered op (``detkit::nms_per_image``) that exports to ONNX."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms

__all__ = ["nms_per_image"]


@torch.library.custom_op("detkit::nms_per_image", mutates_args=())
def nms_per_image(boxes: Tensor, scores: Tensor, iou_threshold: float, max_kept: int | None = None) -> Tensor:
    """Greedy NMS in each image of a batch, over its candidates with a score ``>= 0``, stopping at
    ``max_kept`` survivors.

    Args:
        boxes: ``(B, N, 4)`` xyxy (shift each class apart beforehand for class-aware NMS).
        scores: ``(B, N)``; candidates with a negative score take no part.
        iou_threshold: Boxes overlapping a higher-scoring kept box by more than this are dropped.
        max_kept: Survivors per image: greedy NMS keeps boxes in descending score, so these are the
            ``max_kept`` highest-scoring survivors of a full NMS; in ONNX the work stops there
            (each candidate is compared with at most ``max_kept`` kept boxes; PyTorch runs the
            full NMS and keeps the first ``max_kept``). ``None``: all survivors
            (what TorchScript files exported before this argument existed call).

    Returns:
        ``BoolTensor[B, N]``: which candidates survive. In ONNX this is one ``NonMaxSuppression``
        with the batch as its batch axis, ``max_output_boxes_per_class = max_kept`` and score
        threshold ``-0.5`` (see :mod:`detkit.deploy.export`).
    """
    kept = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    for b in range(scores.shape[0]):  # inference only: a handful of images
        candidates = (scores[b] >= 0).nonzero().squeeze(1)
        survivors = candidates[nms(boxes[b, candidates], scores[b, candidates], iou_threshold)[:max_kept]]
        kept[b, survivors] = True
    return kept


@nms_per_image.register_fake
def _(boxes: Tensor, scores: Tensor, iou_threshold: float, max_kept: int | None = None) -> Tensor:
    return torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
