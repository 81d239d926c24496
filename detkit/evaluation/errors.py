"""Where a detector's errors are: the images each TIDE error type costs most in, missed-vs-found box geometry, confusion views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detkit.evaluation.cocojson import GroundTruth, Results
from detkit.evaluation.tide import DETECTION_OUTCOMES, ERROR_TYPES, GROUND_TRUTH_OUTCOMES, ErrorAssignment

__all__ = ["CostlyImage", "box_geometry", "costly_images", "error_weights", "normalize_rows", "most_confused"]


@dataclass
class CostlyImage:
    """One image of a failure gallery.

    Attributes:
        image: index into ``gt.image_ids``.
        cost: the summed weight of its errors of the type (see :func:`error_weights`).
        rows: ``int64[E]`` those errors, most costly first: detection rows of ``dt``, or, for
            ``"missed"``, ground-truth rows of ``gt``.
    """

    image: int
    cost: float
    rows: np.ndarray


def error_weights(gt: GroundTruth, dt: Results, assignment: ErrorAssignment, error: str) -> tuple[np.ndarray, np.ndarray]:
    """The errors of one TIDE type and how much each costs -> ``(rows int64[E], weight float64[E])``.

    A detection error weighs the share of its class's true positives that score below it (the
    recall range over which it lowers precision, so a confident error weighs most; ``+ 1e-3 x score``
    orders errors of a class without true positives). A missed ground truth weighs ``1 / N``, its
    class's share of recall (``N`` its class's non-crowd ground truths).
    """
    if error not in ERROR_TYPES:
        raise ValueError(f"error must be one of {ERROR_TYPES}, got {error!r}")
    if error == "missed":
        rows = np.flatnonzero(assignment.ground_truth == GROUND_TRUTH_OUTCOMES.index("missed"))
        num_gt = np.bincount(gt.category[~gt.iscrowd], minlength=len(gt.category_ids))
        return rows, 1.0 / np.maximum(num_gt[gt.category[rows]], 1)
    rows = np.flatnonzero(assignment.detection == DETECTION_OUTCOMES.index(error))
    tp = assignment.detection == DETECTION_OUTCOMES.index("true_positive")
    weight = 1e-3 * dt.scores[rows]
    for k in np.unique(dt.category[rows]):
        tp_scores = np.sort(dt.scores[tp & (dt.category == k)])
        mine = dt.category[rows] == k
        if len(tp_scores):
            weight[mine] += np.searchsorted(tp_scores, dt.scores[rows[mine]], side="left") / len(tp_scores)
    return rows, weight


def costly_images(gt: GroundTruth, dt: Results, assignment: ErrorAssignment, error: str, top: int = 6) -> list[CostlyImage]:
    """The ``top`` images whose errors of type ``error`` weigh most (:func:`error_weights`), heaviest first."""
    rows, weight = error_weights(gt, dt, assignment, error)
    if not len(rows):
        return []
    image = gt.image[rows] if error == "missed" else dt.image[rows]
    cost = np.bincount(image, weights=weight, minlength=len(gt.image_ids))
    ranked = [int(i) for i in np.argsort(-cost, kind="stable")[:top] if cost[i] > 0]
    out = []
    for i in ranked:
        mine = np.flatnonzero(image == i)
        out.append(CostlyImage(i, float(cost[i]), rows[mine[np.argsort(-weight[mine], kind="stable")]]))
    return out


def box_geometry(gt: GroundTruth, image_sizes: dict[int, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """Size, shape and place of every ground-truth box.

    Args:
        gt: the ground truth.
        image_sizes: ``image_id -> (height, width)``; images missing from it get ``nan`` border values.

    Returns:
        ``float64[G]`` arrays: ``size`` (square root of the box area, pixels), ``aspect`` (width /
        height) and ``border`` (distance from the box to the nearest image edge as a share of the
        image's shorter side; 0: touching the edge; ``nan``: image size unknown).
    """
    x, y, w, h = gt.boxes.T if len(gt.boxes) else np.zeros((4, 0))
    border = np.full(len(gt.boxes), np.nan)
    if image_sizes:
        ids = gt.image_ids[gt.image]
        size = np.array([image_sizes.get(int(i), (np.nan, np.nan)) for i in ids], dtype=np.float64).reshape(-1, 2)
        height, width = size.T
        gap = np.minimum.reduce([x, y, width - (x + w), height - (y + h)])
        border = np.clip(gap, 0, None) / np.minimum(height, width)
    return {"size": np.sqrt(np.clip(w * h, 0, None)), "aspect": w / np.maximum(h, 1e-9), "border": border}


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (rows summing to 0 stay 0) -> ``float64`` shares."""
    total = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(matrix, total, out=np.zeros(matrix.shape, dtype=np.float64), where=total > 0)


def most_confused(matrix: np.ndarray, limit: int) -> np.ndarray:
    """Which classes of a ``[K+1, K+1]`` confusion matrix (last: background) to show when ``K > limit``.

    Returns:
        ``int64`` indices, ascending, always ending with the background index ``K``: all classes when
        ``K <= limit``, else the ``limit`` classes with the most off-diagonal counts (confused with
        another class, missed or predicted on background; ties: the lower index).
    """
    num_k = matrix.shape[0] - 1
    if num_k <= limit:
        return np.arange(num_k + 1)
    off = matrix[:num_k, :num_k + 1].sum(axis=1) + matrix[:num_k + 1, :num_k].sum(axis=0) - 2 * np.diag(matrix)[:num_k]
    chosen = np.sort(np.argsort(-off, kind="stable")[:limit])
    return np.append(chosen, num_k)
