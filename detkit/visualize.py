"""Pictures of detections: boxes, class names and scores drawn onto images."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

# A fixed palette so a class keeps its colour across images (tab10).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def draw_detections(
    image: np.ndarray,
    boxes: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    scores: Tensor | None = None,
    width: int = 2,
) -> np.ndarray:
    """Draw boxes on an image.

    Args:
        image: ``HxWx3`` uint8 RGB.
        boxes: ``FloatTensor[D, 4]`` xyxy in the image's pixels.
        labels: ``Int64Tensor[D]`` class indices into ``class_names``.
        class_names: one name per class.
        scores: optional ``FloatTensor[D]``, appended to each caption.
        width: line width in pixels.

    Returns:
        A new ``HxWx3`` uint8 RGB array.
    """
    if len(boxes) == 0:
        return image.copy()
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    names = [class_names[i] for i in labels.tolist()]
    if scores is not None:
        names = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist())]
    colors = [PALETTE[i % len(PALETTE)] for i in labels.tolist()]
    drawn = draw_bounding_boxes(chw, boxes.detach().cpu().float(), labels=names, colors=colors, width=width)
    return drawn.permute(1, 2, 0).numpy()
