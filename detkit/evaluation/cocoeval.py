"""Exact, vectorised re-implementation of pycocotools' bbox ``COCOeval`` (evaluate, accumulate, summarize)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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


#: Kept detections matched at a time (a few hundred bytes each while matched): bounds the matching's memory.
CHUNK_DETECTIONS = 2**15
# A detection's outcomes in one uint64: area range a, IoU threshold t at bit 16 * a + t.
assert len(AREA_RANGES) <= 4 and len(IOU_THRESHOLDS) <= 16
_T_BITS = np.arange(len(IOU_THRESHOLDS), dtype=np.uint64)[:, None]


def _pack(flags: np.ndarray) -> np.ndarray:
    """``bool[A, T, n]`` -> ``uint64[n]`` with ``flags[a, t]`` at bit ``16 * a + t``."""
    num_a, num_t, n = flags.shape
    bits = np.zeros((n, 4, 16), bool)
    bits[:, :num_a, :num_t] = flags.transpose(2, 0, 1)
    return np.packbits(bits.reshape(n, 64), axis=1, bitorder="little").view("<u8").reshape(-1)


def _unpack(words: np.ndarray, a: int) -> np.ndarray:
    """``uint64[n]`` -> ``uint8[T, n]``: the outcomes of area range ``a`` (inverse of :func:`_pack`)."""
    return ((words[None, :] >> (_T_BITS + np.uint64(16 * a))) & np.uint64(1)).astype(np.uint8)


def _area_ignore(area: np.ndarray) -> np.ndarray:
    """``bool[A, N]``: outside each area range (bounds inclusive, as pycocotools)."""
    lows = np.array([lo for _, lo, _ in AREA_RANGES])[:, None]
    highs = np.array([hi for _, _, hi in AREA_RANGES])[:, None]
    return (area[None, :] < lows) | (area[None, :] > highs)


def _rank(dt: Results, num_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections by (image, category), then descending score (ties keep file order), at most
    ``MAX_DETS[-1]`` of each -> ``(index, rank, key)`` of those kept, ``key = image * K + category``."""
    det_keys = dt.image * num_k + dt.category
    order = np.lexsort((-dt.scores, det_keys))
    keys = det_keys[order]
    del det_keys
    rank = group_ranks(keys)
    keep = rank < MAX_DETS[-1]
    return order[keep], rank[keep], keys[keep]


def _chunks(keys: np.ndarray, size: int) -> np.ndarray:
    """Bounds ``[C + 1]`` cutting sorted ``keys`` into runs of about ``size`` that never split a key."""
    cuts = np.searchsorted(keys, keys[np.arange(size, len(keys), size)], side="left")
    return np.unique(np.r_[0, cuts, len(keys)])


def _match_chunk(
    gt: GroundTruth, dt: Results, index: np.ndarray, rank: np.ndarray, keys: np.ndarray,
    gt_order: np.ndarray, gt_keys: np.ndarray, keep_matches: bool,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:  # fmt: skip
    """``COCOeval.evaluate()`` of whole (image, category) groups -> true and false positives
    ``bool[A, T, n]`` (neither: ignored) and, with ``keep_matches``, (matched ground-truth row
    ``int64[A, T, n]``, ``-1`` if none; ignored ``bool[A, T, n]``)."""
    lo, hi = np.searchsorted(gt_keys, keys[0], side="left"), np.searchsorted(gt_keys, keys[-1], side="right")
    rows = gt_order[lo:hi]  # the ground truth of these groups, by group, file order within one
    pair_det, pair_pos = group_pairs(keys, gt_keys[lo:hi])
    crowd = gt.iscrowd[rows]
    iou = pair_iou(dt.boxes[index[pair_det]], gt.boxes[rows[pair_pos]], crowd[pair_pos])
    near = iou >= IOU_THRESHOLDS[0]  # a pair below the lowest threshold never matches
    gt_ignore = crowd[None, :] | _area_ignore(gt.area[rows])  # [A, g]
    matched = greedy_match(pair_det[near], pair_pos[near], iou[near], rank, gt_ignore, crowd, IOU_THRESHOLDS, len(index))
    boxes = dt.boxes[index]
    outside = _area_ignore(boxes[:, 2] * boxes[:, 3])[:, None, :]  # [A, 1, n]
    found = matched >= 0
    a_index = np.arange(len(AREA_RANGES))[:, None, None]
    counted = np.c_[~gt_ignore, np.zeros(len(AREA_RANGES), bool)]  # [A, g + 1]: -1 (no match) picks the last
    tp = counted[a_index, matched]  # matched to a ground truth that counts
    fp = ~(found | outside)
    kept = None
    if keep_matches:
        gt_row = np.r_[rows, -1][matched]
        kept = gt_row, np.where(found, ~tp, outside)
    return tp, fp, kept


def _match(
    gt: GroundTruth, dt: Results, keep_matches: bool, chunk: int, pool: ThreadPoolExecutor
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, MatchedDetections | None]:
    """Every (image, category) group matched, ``chunk`` kept detections at a time -> ``(index, rank,
    tp, fp, matches)``: ``tp`` / ``fp`` ``uint64[D]``, the true and false positives (neither:
    ignored) of each kept detection at bit ``16 * a + t`` (:func:`_pack`); ``matches`` with
    ``keep_matches``. Chunks run on ``pool``'s threads (numpy releases the GIL)."""
    num_k = len(gt.category_ids)
    index, rank, keys = _rank(dt, num_k)
    gt_order = np.argsort(gt.image * num_k + gt.category, kind="stable")  # file order within each group
    gt_keys = (gt.image * num_k + gt.category)[gt_order]
    tp, fp = np.zeros(len(index), "<u8"), np.zeros(len(index), "<u8")
    shape = (len(AREA_RANGES), len(IOU_THRESHOLDS), len(index))
    kept = (np.full(shape, -1, np.int64), np.zeros(shape, bool)) if keep_matches else None
    bounds = _chunks(keys, chunk)

    def one(s: int, e: int) -> None:  # writes its own columns only
        tps, fps, matches = _match_chunk(gt, dt, index[s:e], rank[s:e], keys[s:e], gt_order, gt_keys, keep_matches)
        tp[s:e], fp[s:e] = _pack(tps), _pack(fps)
        if kept is not None and matches is not None:
            kept[0][:, :, s:e], kept[1][:, :, s:e] = matches

    list(pool.map(one, bounds[:-1].tolist(), bounds[1:].tolist()))
    matches = MatchedDetections(index=index, rank=rank, gt=kept[0], ignore=kept[1]) if kept is not None else None
    return index, rank, tp, fp, matches


def _accumulate(
    gt: GroundTruth, dt: Results, index: np.ndarray, rank: np.ndarray, tp_bits: np.ndarray, fp_bits: np.ndarray,
    pool: ThreadPoolExecutor,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``COCOeval.accumulate()`` -> (precision [T,R,K,A,M], recall [T,K,A,M], non-ignored gt [K, A]);
    categories run on ``pool``'s threads."""
    num_t, num_r, num_k = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(gt.category_ids)
    num_a, num_m = len(AREA_RANGES), len(MAX_DETS)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    gt_ignore = gt.iscrowd[None, :] | _area_ignore(gt.area)
    npig = np.stack([np.bincount(gt.category[~ig], minlength=num_k) for ig in gt_ignore], axis=1)  # [K, A]

    # pycocotools concatenates images in sorted-id order, each image's detections by score, then
    # sorts by score with a stable mergesort: so ties go to image order, then rank in the image.
    # index is by (image, category, rank): a stable sort by score, then by category, leaves ties in that order.
    order = np.argsort(-dt.scores[index], kind="stable")
    category = dt.category[index]
    small = category.astype(np.int16) if num_k < 2**15 else category  # numpy sorts 16-bit integers by radix
    order = order[np.argsort(small[order], kind="stable")]
    sel = [order[rank[order] < max_det] if max_det < MAX_DETS[-1] else order for max_det in MAX_DETS]
    bounds = [np.searchsorted(category[s], np.arange(num_k + 1)) for s in sel]

    def one(k: int) -> None:  # writes category k's entries only
        areas = np.flatnonzero(npig[k] > 0)
        if len(areas) == 0:
            return  # no ground truth of k in any area range: -1 everywhere
        for m in reversed(range(num_m)):
            nd = bounds[m][k + 1] - bounds[m][k]
            if m + 1 < num_m and nd == bounds[m + 1][k + 1] - bounds[m + 1][k]:  # no detection of rank >= max_det
                precision[:, :, k, :, m], recall[:, k, :, m] = precision[:, :, k, :, m + 1], recall[:, k, :, m + 1]
                continue
            rows = sel[m][bounds[m][k] : bounds[m][k + 1]]
            tps, fps = tp_bits[rows], fp_bits[rows]
            for a in areas:
                precision[:, :, k, a, m], recall[:, k, a, m] = _curve(tps, fps, a, npig[k, a])

    list(pool.map(one, range(num_k)))
    return precision, recall, npig


def _curve(tp_bits: np.ndarray, fp_bits: np.ndarray, a: int, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision ``[T, R]`` and recall ``[T]`` of one category in area range ``a``, from the
    outcome bits (:func:`_pack`) of its detections in pycocotools' order, exactly as ``COCOeval.accumulate()``."""
    # A detection ignored at every threshold changes no cumulative sum: leaving it out gives the
    # same recall and precision at each recall threshold (it is most of them for small / medium / large).
    mask = np.uint64(0xFFFF << (16 * a))
    counted = np.flatnonzero((tp_bits | fp_bits) & mask)
    n = len(counted)
    if n == 0:
        return np.zeros((len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS))), np.zeros(len(IOU_THRESHOLDS))
    tps, fps = _unpack(tp_bits[counted], a), _unpack(fp_bits[counted], a)  # [T, n]
    tp = np.cumsum(tps, axis=1, dtype=np.float64)  # [T, n]
    total = np.cumsum(fps, axis=1, dtype=np.float64)
    total += tp  # fp + tp
    total += np.spacing(1)
    pr = np.empty((len(tp), n + 1))  # a last column of 0: the precision beyond the recall reached
    pr[:, n] = 0.0
    np.divide(tp, total, out=pr[:, :n])
    del total
    envelope = pr[:, n - 1 :: -1]
    np.maximum.accumulate(envelope, axis=1, out=envelope)  # from the last detection back
    rc = np.divide(tp, num_gt, out=tp)
    inds = np.stack([np.searchsorted(r, RECALL_THRESHOLDS, side="left") for r in rc])
    return np.take_along_axis(pr, inds, axis=1), rc[:, -1]


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


def evaluate_coco(
    gt: GroundTruth, dt: Results, keep_matches: bool = True, chunk: int = CHUNK_DETECTIONS, workers: int | None = None
) -> CocoEvalResult:
    """Evaluate bbox detections exactly as pycocotools' ``COCOeval(gt, dt, "bbox")`` with default params.

    Images are all of the ground truth's (sorted by id), categories all of its ``categories``;
    at most 100 detections per image and category count, by descending score. Groups of
    (image, category) are matched ``chunk`` detections at a time, each keeping 10 bytes of
    outcome, so memory grows by about 100 bytes a detection at any size (100k images x 100
    detections: ``python -m tools.bench_scale evaluate``); ``keep_matches`` adds
    :attr:`CocoEvalResult.matches` (360 bytes a detection). Chunks, then categories, run on
    ``workers`` threads (default: the CPUs this process may use, at most 8); the result does not
    depend on how many.
    """
    workers = workers or min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        index, rank, tp, fp, matches = _match(gt, dt, keep_matches, chunk, pool)
        precision, recall, npig = _accumulate(gt, dt, index, rank, tp, fp, pool)
    return CocoEvalResult(
        stats=summarize(precision, recall),
        precision=precision,
        recall=recall,
        category_ids=gt.category_ids,
        category_names=list(gt.category_names),
        num_gt=npig[:, 0].astype(np.int64),
        num_dt=np.bincount(dt.category[index], minlength=len(gt.category_ids)),
        matches=matches,
    )
