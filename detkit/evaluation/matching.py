"""Vectorised detection-to-ground-truth matching with pycocotools' exact IoU and greedy rules."""

from __future__ import annotations

import numpy as np

__all__ = ["group_ranks", "group_pairs", "pair_iou", "greedy_match"]


def group_ranks(keys: np.ndarray) -> np.ndarray:
    """Position of each item within its run of equal ``keys`` (``keys`` sorted) -> ``int64[N]``."""
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n) - np.repeat(starts, lengths)


def group_pairs(det_keys: np.ndarray, gt_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection, ground truth) pair sharing a group key.

    Args:
        det_keys: ``int64[D]`` group key of each detection, in the order pairs should follow.
        gt_keys: ``int64[G]`` group key of each ground truth, sorted ascending.

    Returns:
        ``(pair_det int64[P], pair_gt int64[P])``: pairs ordered by detection, then ground truth.
    """
    start = np.searchsorted(gt_keys, det_keys, side="left")
    count = np.searchsorted(gt_keys, det_keys, side="right") - start
    pair_det = np.repeat(np.arange(len(det_keys)), count)
    offsets = np.cumsum(count) - count  # first pair of each detection
    pair_gt = np.arange(len(pair_det)) - np.repeat(offsets - start, count)
    return pair_det, pair_gt


def pair_iou(dt_xywh: np.ndarray, gt_xywh: np.ndarray, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of paired ``float64[P, 4]`` ``[x, y, w, h]`` boxes, bit-identical to pycocotools' ``bbIou``.

    For a crowd ground truth the union is the detection's own area (COCO's rule), so a detection
    inside a crowd region has IoU 1 with it.
    """
    dx, dy, dw, dh = dt_xywh.T
    gx, gy, gw, gh = gt_xywh.T
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    da = dw * dh
    union = np.where(gt_crowd, da, da + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _best(values: np.ndarray, ok: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Per segment: position of the last maximum of ``values`` where ``ok`` (-1 if none) -> ``[..., S]``
    (``seg``: the segment of each position)."""
    masked = np.where(ok, values, -1.0)
    best = np.maximum.reduceat(masked, starts, axis=-1)
    hit = ok & (masked == best[..., seg])
    return np.maximum.reduceat(np.where(hit, np.arange(masked.shape[-1]), -1), starts, axis=-1)


def greedy_match(
    pair_det: np.ndarray,
    pair_gt: np.ndarray,
    iou: np.ndarray,
    det_rank: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    thresholds: np.ndarray,
    num_dets: int,
) -> np.ndarray:
    """COCO's greedy matching of every group at once, for several ignore sets and IoU thresholds.

    Detections of a group are taken in rank (score) order; each takes, among the ground truths of
    its group with IoU >= the threshold and not yet taken (crowds can be taken again), the one with
    the highest IoU, preferring non-ignored ground truths; equal IoUs go to the later ground truth,
    exactly as ``COCOeval.evaluateImg``. Groups are independent, so rank ``r`` of every group is
    matched in one vectorised step.

    Args:
        pair_det: ``int64[P]`` detection of each candidate pair (pairs grouped by detection, ground
            truths in file order within a detection), e.g. from :func:`group_pairs`.
        pair_gt: ``int64[P]`` ground truth of each pair.
        iou: ``float64[P]`` IoU of each pair.
        det_rank: ``int64[D]`` rank of each detection within its group (0 = highest score).
        gt_ignore: ``bool[V, G]`` ignored ground truths, one row per variant (e.g. area range).
        gt_crowd: ``bool[G]`` crowd ground truths (may match several detections).
        thresholds: ``float64[T]`` IoU thresholds.
        num_dets: ``D``.

    Returns:
        ``int64[V, T, D]``: the matched ground truth of each detection, ``-1`` for none.
    """
    num_variants, num_gt = gt_ignore.shape
    thr = np.minimum(thresholds, 1 - 1e-10)[None, :, None]  # [1, T, 1]
    matched = np.full((num_variants, len(thresholds), num_dets), -1, dtype=np.int64)
    taken = np.zeros((num_variants, len(thresholds), num_gt), dtype=bool)
    rank = det_rank[pair_det]
    order = np.argsort(rank, kind="stable")  # pairs by rank, keeping detection / gt order
    bounds = np.searchsorted(rank[order], np.arange(int(rank.max(initial=-1)) + 2))
    for r in range(len(bounds) - 1):
        sel = order[bounds[r] : bounds[r + 1]]
        if len(sel) == 0:
            continue
        dets, gts, ious = pair_det[sel], pair_gt[sel], iou[sel]
        new_det = np.empty(len(dets), bool)
        new_det[0], new_det[1:] = True, dets[1:] != dets[:-1]
        starts = np.flatnonzero(new_det)
        seg = np.cumsum(new_det) - 1  # the segment (detection) of each pair
        free = ~taken[:, :, gts] | gt_crowd[gts]  # [V, T, p]
        ok = (ious >= thr) & free
        ignored = gt_ignore[:, gts][:, None, :]  # [V, 1, p]
        pick = _best(ious, ok & ~ignored, starts, seg)  # [V, T, S]
        fallback = _best(ious, ok & ignored, starts, seg)
        pick = np.where(pick >= 0, pick, fallback)
        v, t, s = np.nonzero(pick >= 0)
        chosen = gts[pick[v, t, s]]
        matched[v, t, dets[starts[s]]] = chosen
        taken[v, t, chosen] = True
    return matched
