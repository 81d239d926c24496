"""Exact, vectorised re-implementation of pycocotools' bbox ``COCOeval`` (evaluate, accumulate, summarize)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from detkit.evaluation.cocojson import GroundTruth, Results
from detkit.evaluation.matching import group_pairs, group_ranks, greedy_match, pair_iou

__all__ = [
    "COCO_STAT_NAMES",
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "AREA_RANGES",
    "MAX_DETS",
    "CocoEvalResult",
    "MatchedDetections",
    "evaluate_coco",
    "summarize",
]

# The 12 numbers of pycocotools' ``COCOeval.summarize()``, in its order, as torchmetrics names them.
COCO_STAT_NAMES: tuple[str, ...] = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip

# pycocotools' ``Params`` for bbox, built the same way (float64 linspace), so thresholds compare identically.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: (name, lower, upper) area ranges, bounds inclusive as in pycocotools.
AREA_RANGES: tuple[tuple[str, float, float], ...] = (
    ("all", 0.0, 1e5**2),
    ("small", 0.0, 32.0**2),
    ("medium", 32.0**2, 96.0**2),
    ("large", 96.0**2, 1e5**2),
)
MAX_DETS: tuple[int, ...] = (1, 10, 100)


@dataclass
class MatchedDetections:
    """Detections kept for evaluation (at most ``MAX_DETS[-1]`` per image and category) and their matches.

    Attributes:
        index: ``int64[D]`` row of each kept detection in the :class:`Results` arrays.
        rank: ``int64[D]`` rank within its (image, category) by descending score.
        gt: ``int64[A, T, D]`` matched ground-truth row per area range and IoU threshold, ``-1`` if none.
        ignore: ``bool[A, T, D]`` detections COCO ignores (matched to an ignored ground truth, or
            unmatched and outside the area range).
    """

    index: np.ndarray
    rank: np.ndarray
    gt: np.ndarray
    ignore: np.ndarray


@dataclass
class CocoEvalResult:
    """What ``COCOeval.accumulate()`` + ``summarize()`` give, plus per-category counts.

    Attributes:
        stats: the 12 stats keyed by :data:`COCO_STAT_NAMES`.
        precision: ``float64[T, R, K, A, M]`` interpolated precision (``-1``: no ground truth).
        recall: ``float64[T, K, A, M]`` recall (``-1``: no ground truth).
        category_ids: ``int64[K]``; category_names: ``K`` names.
        num_gt: ``int64[K]`` non-crowd ground truths per category.
        num_dt: ``int64[K]`` evaluated detections per category (after the per-image cap).
        matches: the per-detection matching, for reports.
    """

    stats: dict[str, float]
    precision: np.ndarray
    recall: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    num_gt: np.ndarray
    num_dt: np.ndarray
    matches: MatchedDetections | None = field(default=None, repr=False)

    def category_stat(self, k: int, ap: bool = True, iou: float | None = None, area: str = "all") -> float:
        """COCO's AP (or AR at 100 detections) of category ``k`` alone; ``-1`` without ground truth."""
        return _mean_valid(self.precision if ap else self.recall, ap, iou, area, MAX_DETS[-1], k)


def _ground_truth_order(gt: GroundTruth, num_categories: int) -> tuple[np.ndarray, np.ndarray]:
    keys = gt.image * num_categories + gt.category
    order = np.argsort(keys, kind="stable")  # file order within each (image, category)
    return order, keys[order]


def _match(gt: GroundTruth, dt: Results) -> MatchedDetections:
    """``COCOeval.evaluate()``: IoUs and greedy matches of every (image, category) at once."""
    num_k = len(gt.category_ids)
    # Detections by (image, category), then descending score; ties keep file order (mergesort).
    det_keys = dt.image * num_k + dt.category
    order = np.lexsort((-dt.scores, det_keys))
    rank = group_ranks(det_keys[order])
    keep = rank < MAX_DETS[-1]
    index, rank, det_keys = order[keep], rank[keep], det_keys[order][keep]

    gt_order, gt_keys = _ground_truth_order(gt, num_k)
    pair_det, pair_pos = group_pairs(det_keys, gt_keys)
    pair_gt = gt_order[pair_pos]
    iou = pair_iou(dt.boxes[index[pair_det]], gt.boxes[pair_gt], gt.iscrowd[pair_gt])

    lows = np.array([lo for _, lo, _ in AREA_RANGES])[:, None]
    highs = np.array([hi for _, _, hi in AREA_RANGES])[:, None]
    gt_ignore = gt.iscrowd[None, :] | (gt.area[None, :] < lows) | (gt.area[None, :] > highs)  # [A, G]
    matched = greedy_match(pair_det, pair_gt, iou, rank, gt_ignore, gt.iscrowd, IOU_THRESHOLDS, len(index))

    boxes = dt.boxes[index]
    det_area = boxes[:, 2] * boxes[:, 3]
    outside = (det_area[None, :] < lows) | (det_area[None, :] > highs)  # [A, D]
    a_index = np.arange(len(AREA_RANGES))[:, None, None]
    ignore = np.where(matched >= 0, gt_ignore[a_index, matched.clip(min=0)], outside[:, None, :])
    return MatchedDetections(index=index, rank=rank, gt=matched, ignore=ignore)


def _accumulate(
    gt: GroundTruth, dt: Results, matches: MatchedDetections
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``COCOeval.accumulate()`` -> (precision [T,R,K,A,M], recall [T,K,A,M], non-ignored gt [K, A])."""
    num_t, num_r, num_k = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(gt.category_ids)
    num_a, num_m = len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))

    lows = np.array([lo for _, lo, _ in AREA_RANGES])[:, None]
    highs = np.array([hi for _, _, hi in AREA_RANGES])[:, None]
    gt_ignore = gt.iscrowd[None, :] | (gt.area[None, :] < lows) | (gt.area[None, :] > highs)
    npig = np.stack([np.bincount(gt.category[~ig], minlength=num_k) for ig in gt_ignore], axis=1)  # [K, A]

    # pycocotools concatenates images in sorted-id order, each image's detections by score, then
    # sorts by score with a stable mergesort: so ties go to image order, then rank in the image.
    idx = matches.index
    category, scores, image = dt.category[idx], dt.scores[idx], dt.image[idx]
    order = np.lexsort((matches.rank, image, -scores, category))
    for m, max_det in enumerate(MAX_DETS):
        sel = order[matches.rank[order] < max_det]
        cat = category[sel]
        bounds = np.searchsorted(cat, np.arange(num_k + 1))
        real = ~matches.ignore[:, :, sel]  # [A, T, N]
        tps = real & (matches.gt[:, :, sel] >= 0)
        fps = real & (matches.gt[:, :, sel] < 0)
        for k in range(num_k):
            lo, hi = bounds[k], bounds[k + 1]
            for a in range(num_a):
                if npig[k, a] == 0:
                    continue
                nd = hi - lo
                if nd == 0:
                    recall[:, k, a, m] = 0.0
                    precision[:, :, k, a, m] = 0.0
                    continue
                tp = np.cumsum(tps[a, :, lo:hi], axis=1).astype(np.float64)  # [T, nd]
                fp = np.cumsum(fps[a, :, lo:hi], axis=1).astype(np.float64)
                rc = tp / npig[k, a]
                pr = tp / (fp + tp + np.spacing(1))
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
                recall[:, k, a, m] = rc[:, -1]
                for t in range(num_t):
                    inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    precision[t, :, k, a, m] = np.where(inds < nd, pr[t, inds.clip(max=nd - 1)], 0.0)
    return precision, recall, npig


def _mean_valid(
    values: np.ndarray, ap: bool, iou: float | None, area: str, max_det: int, k: int | None = None
) -> float:
    """``COCOeval.summarize._summarize``: mean of the entries > -1 selected, else -1."""
    a = [name for name, _, _ in AREA_RANGES].index(area)
    m = MAX_DETS.index(max_det)
    s = values if iou is None else values[np.flatnonzero(iou == IOU_THRESHOLDS)]
    s = s[:, :, :, a, m] if ap else s[:, :, a, m]
    if k is not None:
        s = s[..., k]
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    """The 12 stats of ``COCOeval.summarize()`` from accumulated precision and recall."""
    specs = [
        (True, None, "all", 100), (True, 0.5, "all", 100), (True, 0.75, "all", 100),
        (True, None, "small", 100), (True, None, "medium", 100), (True, None, "large", 100),
        (False, None, "all", 1), (False, None, "all", 10), (False, None, "all", 100),
        (False, None, "small", 100), (False, None, "medium", 100), (False, None, "large", 100),
    ]  # fmt: skip
    return {
        name: _mean_valid(precision if ap else recall, ap, iou, area, max_det)
        for name, (ap, iou, area, max_det) in zip(COCO_STAT_NAMES, specs)
    }


def evaluate_coco(gt: GroundTruth, dt: Results) -> CocoEvalResult:
    """Evaluate bbox detections exactly as pycocotools' ``COCOeval(gt, dt, "bbox")`` with default params.

    Images are all of the ground truth's (sorted by id), categories all of its ``categories``;
    at most 100 detections per image and category count, by descending score.
    """
    matches = _match(gt, dt)
    precision, recall, npig = _accumulate(gt, dt, matches)
    return CocoEvalResult(
        stats=summarize(precision, recall),
        precision=precision,
        recall=recall,
        category_ids=gt.category_ids,
        category_names=list(gt.category_names),
        num_gt=npig[:, 0].astype(np.int64),
        num_dt=np.bincount(dt.category[matches.index], minlength=len(gt.category_ids)),
        matches=matches,
    )
