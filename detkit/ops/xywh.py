"""COCO ``[x, y, width, height]`` boxes <-> ``[x1, y1, x2, y2]`` for numpy arrays (numpy only: the json evaluation path imports no torch)."""

from __future__ import annotations

import numpy as np

__all__ = ["xywh_to_xyxy", "xyxy_to_xywh"]


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """``[..., 4]`` ``[x1, y1, x2, y2]`` -> ``[..., 4]`` COCO ``[x, y, width, height]`` (a new array, same dtype).

    Example: ``[[10, 20, 30, 60]]`` -> ``[[10, 20, 20, 40]]``.
    """
    boxes = np.asarray(boxes)
    return np.concatenate((boxes[..., :2], boxes[..., 2:] - boxes[..., :2]), axis=-1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``[..., 4]`` COCO ``[x, y, width, height]`` -> ``[..., 4]`` ``[x1, y1, x2, y2]`` (a new array, same dtype).

    Example: ``[[10, 20, 20, 40]]`` -> ``[[10, 20, 30, 60]]``.
    """
    boxes = np.asarray(boxes)
    return np.concatenate((boxes[..., :2], boxes[..., :2] + boxes[..., 2:]), axis=-1)
