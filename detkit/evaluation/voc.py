"""PASCAL VOC-style AP at IoU 0.5 with all-point interpolation (VOC2010+), vectorised in numpy."""

from __future__ import annotations

import numpy as np

from detkit.evaluation.cocojson import GroundTruth, Results
from detkit.evaluation.matching import group_pairs, pair_iou

__all__ = ["voc_ap", "average_precision_all_points"]


def average_precision_all_points(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, VOC2010+'s all-point interpolation.

    Args:
        recall: ``float64[N]`` cumulative recall, non-decreasing.
        precision: ``float64[N]`` cumulative precision at the same detections.
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def voc_ap(gt: GroundTruth, dt: Results, iou_threshold: float = 0.5) -> tuple[float, np.ndarray]:
    """VOC AP of every category and their mean, as the VOC devkit computes it.

    Per category, detections are taken by descending score (ties: image order, then file order);
    each goes to the ground truth of its image and category it overlaps most (plain IoU, first of
    equals). Above ``iou_threshold`` it is a true positive if that ground truth is new, a false
    positive if it was already found, and ignored if it is "difficult" (COCO ``iscrowd``); below,
    a false positive. There is no cap on detections per image.

    Returns:
        ``(mean AP over categories with ground truth, float64[K] AP per category (nan: no ground truth))``.
    """
    num_k = len(gt.category_ids)
    gt_keys = gt.image * num_k + gt.category
    gt_order = np.argsort(gt_keys, kind="stable")
    order = np.lexsort((np.arange(len(dt.scores)), dt.image, -dt.scores, dt.category))  # per category, by score
    det_keys = dt.image[order] * num_k + dt.category[order]
    pair_det, pair_pos = group_pairs(det_keys, gt_keys[gt_order])
    pair_gt = gt_order[pair_pos]
    iou = pair_iou(dt.boxes[order[pair_det]], gt.boxes[pair_gt], np.zeros(len(pair_gt), dtype=bool))

    # Best ground truth of each detection: highest IoU, first of equals.
    best_gt = np.full(len(order), -1, dtype=np.int64)
    best_iou = np.zeros(len(order))
    if len(pair_det):
        starts = np.flatnonzero(np.r_[True, pair_det[1:] != pair_det[:-1]])
        top = np.maximum.reduceat(iou, starts)
        seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(iou)]))
        positions = np.where(iou == top[seg], np.arange(len(iou)), len(iou))
        first = np.minimum.reduceat(positions, starts)
        best_gt[pair_det[starts]] = pair_gt[first]
        best_iou[pair_det[starts]] = top
    hit = best_iou > iou_threshold
    difficult = hit & gt.iscrowd[best_gt.clip(min=0)]
    claims = np.flatnonzero(hit & ~difficult)
    _, first_claim = np.unique(best_gt[claims], return_index=True)  # detections come in score order
    tp = np.zeros(len(order), dtype=bool)
    tp[claims[first_claim]] = True
    fp = ~tp & ~difficult

    category = dt.category[order]
    bounds = np.searchsorted(category, np.arange(num_k + 1))
    npos = np.bincount(gt.category[~gt.iscrowd], minlength=num_k)
    ap = np.full(num_k, np.nan)
    for k in np.flatnonzero(npos > 0):
        tps = np.cumsum(tp[bounds[k] : bounds[k + 1]], dtype=np.float64)
        fps = np.cumsum(fp[bounds[k] : bounds[k + 1]], dtype=np.float64)
        precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
        ap[k] = average_precision_all_points(tps / npos[k], precision)
    valid = ap[~np.isnan(ap)]
    return (float(valid.mean()) if valid.size else -1.0), ap
