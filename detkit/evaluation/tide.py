"""TIDE error decomposition (Bolya et al., ECCV 2020): the AP each error type costs, exactly as tidecv 1.0.1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import numpy as np

from detkit.evaluation.cocojson import GroundTruth, Results, load_ground_truth, load_results, read_json
from detkit.evaluation.matching import group_pairs, group_ranks, greedy_match, pair_iou

__all__ = [
    "DETECTION_OUTCOMES",
    "ERROR_TYPES",
    "GROUND_TRUTH_OUTCOMES",
    "SPECIAL_ERROR_TYPES",
    "ErrorAssignment",
    "ErrorDecomposition",
    "assign_errors",
    "evaluate_tide",
]

#: TIDE's six main error types, in its order (tidecv's Cls, Loc, Both, Dupe, Bkg, Miss).
ERROR_TYPES: tuple[str, ...] = ("classification", "localization", "both", "duplicate", "background", "missed")
#: TIDE's two "special" errors: perfect precision (FalsePos) and perfect recall (FalseNeg).
SPECIAL_ERROR_TYPES: tuple[str, ...] = ("false_positive", "false_negative")
# tidecv's 101 recall bars are ``x / 100`` (not np.linspace; the two differ in the last bit for some x).
_RECALL_BARS = np.arange(101) / 100
_CLS, _LOC, _BOTH, _DUPE, _BKG = range(5)  # codes of the detection errors, indices into ERROR_TYPES
#: What :func:`assign_errors` says of each detection: matched, one of TIDE's five detection errors,
#: unmatched inside a crowd region of its class (not in the AP), or past the ``max_dets`` cap.
DETECTION_OUTCOMES: tuple[str, ...] = ("true_positive", *ERROR_TYPES[:5], "ignored", "not_evaluated")
#: What :func:`assign_errors` says of each ground truth: matched by a true positive; matched by none
#: but pointed at by a classification or localization error (fixing that error finds it); TIDE's
#: "missed" (nothing points at it); a crowd region (never to be found).
GROUND_TRUTH_OUTCOMES: tuple[str, ...] = ("found", "found_with_error", "missed", "crowd")


@dataclass
class ErrorDecomposition:
    """TIDE's numbers, in AP points (0-100) as TIDE reports them.

    Attributes:
        ap: AP at the foreground IoU over all classes (tidecv's mAP: the mean over classes with
            ground truth or detections).
        errors: dAP per name of :data:`ERROR_TYPES` and :data:`SPECIAL_ERROR_TYPES`: the AP gained
            when that error type alone is fixed (main errors clipped at 0, as tidecv does).
        counts: number of errors of each :data:`ERROR_TYPES` name.
        category_ids: ``int64[K]`` the ground truth's category ids; category_names: ``K`` names.
        category_ap: ``float64[K]`` AP of each class alone (``nan``: neither ground truth nor detections).
        category_errors: ``float64[K]`` per error name, the same dAP for each class alone (``nan`` as above).
    """

    ap: float
    errors: dict[str, float]
    counts: dict[str, int]
    category_ids: np.ndarray
    category_names: list[str]
    category_ap: np.ndarray
    category_errors: dict[str, np.ndarray]

    def summary(self) -> str:
        """TIDE's two summary tables as markdown (AP, then the dAP of each error type)."""
        names = ERROR_TYPES + SPECIAL_ERROR_TYPES
        head = "| AP | " + " | ".join(names) + " |"
        rule = "|---:" * (len(names) + 1) + "|"
        row = f"| {self.ap:.2f} | " + " | ".join(f"{self.errors[n]:.2f}" for n in names) + " |"
        return "\n".join([head, rule, row])


def _ground_truth(gt: GroundTruth | dict | str | Path) -> tuple[GroundTruth, np.ndarray]:
    """Parsed ground truth and ``int64[I]`` each image's position in the file's ``images`` list.

    tidecv visits images in file order, which breaks score ties between images; a parsed
    :class:`GroundTruth` has lost that order and is taken in ascending id order.
    """
    if isinstance(gt, GroundTruth):
        return gt, np.arange(len(gt.image_ids))
    data = gt if isinstance(gt, dict) else read_json(gt)
    parsed = load_ground_truth(data, source=None if isinstance(gt, dict) else str(gt))
    file_ids = np.fromiter((im["id"] for im in data["images"]), np.int64, len(data["images"]))
    pos = np.searchsorted(parsed.image_ids, file_ids)
    rank = np.empty(len(parsed.image_ids), dtype=np.int64)
    rank[pos[::-1]] = np.arange(len(file_ids))[::-1]  # a repeated id keeps its first place
    return parsed, rank


def _first_max(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per segment of ``values`` (``float64[P]``): the maximum and the position of its first occurrence
    (``np.argmax`` of each row of tidecv's IoU matrices) -> ``(float64[S], int64[S])``."""
    best = np.maximum.reduceat(values, starts)
    hit = values == np.repeat(best, counts)
    first = np.minimum.reduceat(np.where(hit, np.arange(len(values)), len(values)), starts)
    return best, first


def _class_ap(
    cls: np.ndarray, score: np.ndarray, tp: np.ndarray, key: np.ndarray, num_gt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """tidecv's ``APDataObject.get_ap`` of every class, and which classes its mAP averages.

    Args:
        cls, score, tp, key: ``[N]`` class, score, true-positive flag and tie order of each data point
            (tidecv sorts by descending score, stably, so ``key`` orders equal scores).
        num_gt: ``int64[K]`` ground-truth positives per class.

    Returns:
        ``(float64[K] AP in points, bool[K] counted)``: a class counts unless it has neither data
        points nor ground truth; AP is 0 without ground truth.
    """
    num_k = len(num_gt)
    order = np.lexsort((key, -score, cls))
    cls, tp = cls[order], tp[order]
    bounds = np.searchsorted(cls, np.arange(num_k + 1))
    size = np.diff(bounds)
    ap = np.zeros(num_k)
    for k in np.flatnonzero((size > 0) & (num_gt > 0)):
        true = np.cumsum(tp[bounds[k] : bounds[k + 1]])
        precision = true / np.arange(1, size[k] + 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # remove the dips, as COCOeval
        idx = np.searchsorted(true / num_gt[k], _RECALL_BARS, side="left")
        bars = np.where(idx < size[k], precision[idx.clip(max=size[k] - 1)], 0.0)
        ap[k] = sum(bars.tolist()) / len(bars) * 100  # tidecv's own sequential sum
    return ap, (size > 0) | (num_gt > 0)


def _mean(ap: np.ndarray, counted: np.ndarray) -> float:
    """tidecv's mAP; 0 when no class counts (where tidecv divides by zero)."""
    return float(np.mean(ap[counted])) if counted.any() else 0.0


@dataclass
class _Outcome:
    """Where tidecv's visit leaves each detection (``[D]``, in visit order) and ground truth (``[G]``)."""

    cls: np.ndarray  # int64[D] category index
    score: np.ndarray  # float64[D]
    used: np.ndarray  # bool[D] true positive
    ignored: np.ndarray  # bool[D] unmatched, inside a crowd of its class: not in the AP
    error: np.ndarray  # int64[D] error code (_CLS ... _BKG) of an unmatched detection, -1 if matched
    target_cls: np.ndarray  # int64[D] category of the ground truth a cls / loc error points at
    best: np.ndarray  # bool[D] the cls / loc error a free ground truth goes to when fixed
    free: np.ndarray  # bool[G] non-crowd ground truth no detection took (a false negative)
    usable: np.ndarray  # bool[G] free ground truth some cls / loc error points at (so not "missed")
    order: np.ndarray  # int64[D] row in ``dt`` of each detection
    partner: np.ndarray  # int64[D] ground truth matched (true positive) or that the error is judged against, -1: none
    partner_iou: np.ndarray  # float64[D] IoU with ``partner`` (0 where none)


def _match(
    gt: GroundTruth, dt: Results, image_rank: np.ndarray, pos_threshold: float, background_threshold: float, max_dets: int
) -> _Outcome:
    """tidecv's ``TIDEExample`` and error detection over every image at once (see :func:`evaluate_tide`)."""
    num_k = len(gt.category_ids)

    # Detections in tidecv's order: images in file order, then descending score (ties: file order).
    order = np.lexsort((-dt.scores, image_rank[dt.image]))
    order = order[group_ranks(image_rank[dt.image][order]) < max_dets]
    num_d = len(order)
    image, cls, score, boxes = dt.image[order], dt.category[order], dt.scores[order], dt.boxes[order]

    # Every (detection, non-crowd ground truth) pair of an image; a detection's pairs in file order.
    real = np.flatnonzero(~gt.iscrowd)
    real = real[np.argsort(gt.image[real], kind="stable")]
    pair_det, pos = group_pairs(image, gt.image[real])
    pair_gt = real[pos]
    iou = pair_iou(boxes[pair_det], gt.boxes[pair_gt], np.zeros(len(pair_det), dtype=bool))
    same = cls[pair_det] == gt.category[pair_gt]

    # Greedy matching per (image, class). COCO's rule gives equal IoUs to the later ground truth,
    # tidecv's argmax to the first: feed each detection's pairs last-to-first.
    group = image * num_k + cls
    by_group = np.argsort(group, kind="stable")
    rank = np.empty(num_d, dtype=np.int64)
    rank[by_group] = group_ranks(group[by_group])
    sel = np.flatnonzero(same)
    sel = sel[np.lexsort((-pos[sel], pair_det[sel]))]
    no_gt = np.zeros(len(gt.boxes), dtype=bool)
    matched = greedy_match(
        pair_det[sel], pair_gt[sel], iou[sel], rank, no_gt[None], no_gt, np.array([pos_threshold]), num_d
    )[0, 0]
    used = matched >= 0
    gt_used = np.zeros(len(gt.boxes), dtype=bool)
    gt_used[matched[used]] = True

    # Unmatched detections inside a crowd region of their class count neither way in the AP.
    crowd = np.flatnonzero(gt.iscrowd)
    crowd_key = gt.image[crowd] * num_k + gt.category[crowd]
    crowd = crowd[np.argsort(crowd_key, kind="stable")]
    crowd_det, crowd_pos = group_pairs(group, np.sort(crowd_key))
    crowd_iou = pair_iou(boxes[crowd_det], gt.boxes[crowd[crowd_pos]], np.ones(len(crowd_det), dtype=bool))
    ignored = np.zeros(num_d, dtype=bool)
    ignored[crowd_det[crowd_iou > pos_threshold]] = True
    ignored &= ~used

    # The error of each unmatched detection, from the rows of tidecv's masked IoU matrices.
    count = np.bincount(pair_det, minlength=num_d)
    has_gt = count > 0
    error = np.full(num_d, -1, dtype=np.int64)
    error[~used & ~has_gt] = _BKG  # an image without (non-crowd) ground truth
    target = np.full(num_d, -1, dtype=np.int64)  # the ground truth a cls / loc error would take
    if len(pair_det):
        starts, counts = (np.cumsum(count) - count)[has_gt], count[has_gt]
        cls_iou, cls_at = _first_max(np.where(same, iou, 0.0), starts, counts)
        other_iou, other_at = _first_max(np.where(same, 0.0, iou), starts, counts)
        dupe_iou, dupe_at = _first_max(np.where(same & gt_used[pair_gt], iou, 0.0), starts, counts)
        any_iou, any_at = _first_max(iou, starts, counts)
        loc = (background_threshold <= cls_iou) & (cls_iou <= pos_threshold)
        wrong = ~loc & (other_iou >= pos_threshold)
        dupe = ~loc & ~wrong & (dupe_iou >= pos_threshold)
        bkg = ~loc & ~wrong & ~dupe & (any_iou <= background_threshold)
        kind = np.select([loc, wrong, dupe, bkg], [_LOC, _CLS, _DUPE, _BKG], _BOTH)
        error[has_gt] = np.where(used[has_gt], -1, kind)
        target[has_gt] = pair_gt[np.where(loc, cls_at, other_at)]
        at = np.select([kind == _LOC, kind == _CLS, kind == _DUPE], [cls_at, other_at, dupe_at], any_at)
        partner_iou = np.zeros(num_d)
        partner = np.full(num_d, -1, dtype=np.int64)
        partner_iou[has_gt], partner[has_gt] = iou[at], np.where(iou[at] > 0, pair_gt[at], -1)
        hit = matched[pair_det] == pair_gt  # a true positive's own pair
        partner_iou[pair_det[hit]], partner[pair_det[hit]] = iou[hit], pair_gt[hit]
    else:
        partner, partner_iou = np.full(num_d, -1, dtype=np.int64), np.zeros(num_d)

    # A free ground truth claimed by cls / loc errors goes to the first (best-scoring) of them.
    fixable = np.flatnonzero((error == _CLS) | (error == _LOC))
    fixable = fixable[~gt_used[target[fixable]]]
    claims = fixable[np.argsort(target[fixable], kind="stable")]
    _, first = np.unique(target[claims], return_index=True)
    best = np.zeros(num_d, dtype=bool)
    best[claims[first]] = True
    usable = np.zeros(len(gt.boxes), dtype=bool)
    usable[target[fixable]] = True
    target_cls = np.append(gt.category, -1)[target]  # -1 where no target
    return _Outcome(
        cls, score, used, ignored, error, target_cls, best, ~gt.iscrowd & ~gt_used, usable, order, partner, partner_iou
    )



def evaluate_tide(
    gt: GroundTruth | dict | str | Path,
    dt: Results | list | str | Path,
    pos_threshold: float = 0.5,
    background_threshold: float = 0.1,
    max_dets: int = 100,
) -> ErrorDecomposition:
    """Decompose the false positives and negatives of bbox detections into TIDE's error types.

    As tidecv's ``TIDE(pos_threshold, background_threshold).evaluate(gt, dt)`` then
    ``get_main_errors()`` / ``get_special_errors()``: per image (in file order), the ``max_dets``
    best-scoring detections, by descending score, each take the free ground truth of their class
    with the highest IoU ``>= pos_threshold`` (first of equals); unmatched detections overlapping a
    crowd of their class by more than ``pos_threshold`` (crowd IoU) are left out of the AP. Each
    unmatched detection gets the first error that fits: localization (same-class IoU in
    ``[background, pos]``), classification (other-class IoU ``>= pos``), duplicate (its ground truth
    already taken), background (every IoU ``<= background``), else both. Fixing a classification or
    localization error makes the highest-scoring such detection of a free ground truth a true
    positive and drops the others; fixing the rest drops them; fixing missed ground truth (free and
    claimed by no such error) removes it. AP is tidecv's 101-bar interpolation at ``pos_threshold``.

    Args:
        gt: a COCO instances json (path or parsed dict) or a :class:`GroundTruth`; crowds are
            ignore regions.
        dt: COCO bbox results (path or parsed list) or :class:`Results` of ``gt``.
        pos_threshold: foreground IoU; background_threshold: background IoU.
        max_dets: detections per image kept, across classes.

    Unlike tidecv, annotations and detections of categories the ground truth does not list are
    dropped (:func:`load_ground_truth`), a detection for an image it does not list is an error, and
    a mean over no class is 0 (tidecv divides by zero, e.g. fixing "missed" without detections).
    """
    gt, image_rank = _ground_truth(gt)
    dt = dt if isinstance(dt, Results) else load_results(dt, gt)
    m = _match(gt, dt, image_rank, pos_threshold, background_threshold, max_dets)
    cls, score, used, error = m.cls, m.score, m.used, m.error
    num_k, num_d = len(gt.category_ids), len(cls)
    num_gt = np.bincount(gt.category[~gt.iscrowd], minlength=num_k)
    missed = m.free & ~m.usable
    num_missed = np.bincount(gt.category[missed], minlength=num_k)
    num_free = np.bincount(gt.category[m.free], minlength=num_k)

    # Base AP: tidecv's data points in visit order. Fixed AP: tidecv rebuilds them as errors first
    # (in visit order), then the true positives, which reorders equal scores.
    seq = np.arange(num_d)
    kept = ~m.ignored
    ap, counted = _class_ap(cls[kept], score[kept], used[kept], seq[kept], num_gt)
    base = _mean(ap, counted)
    fp = ~used & kept

    def fixed(fix: int | None, fp_score: np.ndarray | None = None, tp_score: np.ndarray | None = None,
              gt_count: np.ndarray = num_gt) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """AP per class once the errors of code ``fix`` are fixed -> ``(ap[K], counted[K])``."""
        stay = fp if fix is None else fp & (error != fix)
        new_tp = m.best & (error == fix) if fix in (_CLS, _LOC) else np.zeros(num_d, dtype=bool)
        new_cls = m.target_cls[new_tp] if fix == _CLS else cls[new_tp]
        parts = [  # (class, score, true positive, tie order)
            (cls[stay], score[stay] if fp_score is None else fp_score[stay], np.zeros(stay.sum(), bool), seq[stay]),
            (new_cls, score[new_tp], np.ones(new_tp.sum(), bool), seq[new_tp]),
            (cls[used], score[used] if tp_score is None else tp_score[used], np.ones(used.sum(), bool), num_d + seq[used]),
        ]  # fmt: skip
        return _class_ap(*(np.concatenate(column) for column in zip(*parts)), gt_count)

    errors, category_errors = {}, {}
    for code, name in enumerate(ERROR_TYPES):
        fix_ap, fix_counted = fixed(None, gt_count=num_gt - num_missed) if name == "missed" else fixed(code)
        errors[name] = max(_mean(fix_ap, fix_counted) - base, 0.0)
        category_errors[name] = np.where(counted, np.maximum(fix_ap - ap, 0.0), np.nan)
    specials = {
        "false_positive": fixed(None, fp_score=np.zeros(num_d), tp_score=np.ones(num_d)),
        "false_negative": fixed(None, gt_count=num_gt - num_free),
    }
    for name, (fix_ap, fix_counted) in specials.items():
        errors[name] = _mean(fix_ap, fix_counted) - base
        category_errors[name] = np.where(counted, fix_ap - ap, np.nan)

    counts = {name: int(np.sum(error == code)) for code, name in enumerate(ERROR_TYPES[:5])}
    counts["missed"] = int(missed.sum())
    return ErrorDecomposition(
        ap=base,
        errors=errors,
        counts=counts,
        category_ids=gt.category_ids,
        category_names=list(gt.category_names),
        category_ap=np.where(counted, ap, np.nan),
        category_errors=category_errors,
    )


@dataclass
class ErrorAssignment:
    """Where each detection and ground truth lands in :func:`evaluate_tide`'s analysis, by row of ``dt`` / ``gt``.

    Attributes:
        detection: ``int64[D]`` index into :data:`DETECTION_OUTCOMES` of each detection.
        detection_gt: ``int64[D]`` the ground-truth row it matched (a true positive) or its error is
            judged against (the same-class box of a localization error or duplicate, the other-class box
            of a classification error, the most overlapping box of a "both" or background error); ``-1``
            where it overlaps none (or is not evaluated).
        detection_iou: ``float64[D]`` IoU with ``detection_gt`` (0 where none).
        ground_truth: ``int64[G]`` index into :data:`GROUND_TRUTH_OUTCOMES` of each ground truth.
        ground_truth_detection: ``int64[G]`` the detection row that found it, else the evaluated
            detection (any class) overlapping it most; ``-1`` where none overlaps it.
        ground_truth_iou: ``float64[G]`` IoU with ``ground_truth_detection`` (0 where none).
    """

    detection: np.ndarray
    detection_gt: np.ndarray
    detection_iou: np.ndarray
    ground_truth: np.ndarray
    ground_truth_detection: np.ndarray
    ground_truth_iou: np.ndarray


def assign_errors(
    gt: GroundTruth, dt: Results, pos_threshold: float = 0.5, background_threshold: float = 0.1, max_dets: int = 100
) -> ErrorAssignment:
    """The outcome of every detection and ground truth in :func:`evaluate_tide` (same arguments, same matching).

    ``evaluate_tide(gt, dt).counts[name]`` is the number of detections (for ``"missed"``: ground
    truths) assigned ``name``, plus, for a detection error, the ``"ignored"`` detections of that error
    type (tidecv counts an unmatched detection inside a crowd region among the errors, though it
    costs no AP). ``gt`` is taken in its own (ascending id) image order, as ``evaluate_tide`` takes
    a parsed :class:`GroundTruth`.
    """
    m = _match(gt, dt, np.arange(len(gt.image_ids)), pos_threshold, background_threshold, max_dets)
    num_d, num_g = len(dt.scores), len(gt.boxes)
    kind = np.where(m.used, 0, m.error + 1)
    kind[m.ignored] = DETECTION_OUTCOMES.index("ignored")
    detection = np.full(num_d, DETECTION_OUTCOMES.index("not_evaluated"), dtype=np.int64)
    detection[m.order] = kind
    detection_gt = np.full(num_d, -1, dtype=np.int64)
    detection_iou = np.zeros(num_d)
    detection_gt[m.order], detection_iou[m.order] = m.partner, m.partner_iou

    outcome = np.full(num_g, GROUND_TRUTH_OUTCOMES.index("found"), dtype=np.int64)
    outcome[m.free & m.usable] = GROUND_TRUTH_OUTCOMES.index("found_with_error")
    outcome[m.free & ~m.usable] = GROUND_TRUTH_OUTCOMES.index("missed")
    outcome[gt.iscrowd] = GROUND_TRUTH_OUTCOMES.index("crowd")
    # Each ground truth's best-overlapping evaluated detection; a found one's own true positive.
    gt_det = np.full(num_g, -1, dtype=np.int64)
    gt_iou = np.zeros(num_g)
    if len(m.order):
        pair_det, pos = group_pairs(dt.image[m.order], gt.image[np.argsort(gt.image, kind="stable")])
        pair_gt = np.argsort(gt.image, kind="stable")[pos]
        iou = pair_iou(dt.boxes[m.order[pair_det]], gt.boxes[pair_gt], np.zeros(len(pair_det), dtype=bool))
        by_iou = np.lexsort((-iou, pair_gt))  # per ground truth, highest IoU first
        first = by_iou[np.r_[True, pair_gt[by_iou][1:] != pair_gt[by_iou][:-1]]] if len(by_iou) else by_iou
        keep = iou[first] > 0
        gt_det[pair_gt[first[keep]]], gt_iou[pair_gt[first[keep]]] = m.order[pair_det[first[keep]]], iou[first[keep]]
        tp = np.flatnonzero(m.used)
        gt_det[m.partner[tp]], gt_iou[m.partner[tp]] = m.order[tp], m.partner_iou[tp]
    return ErrorAssignment(detection, detection_gt, detection_iou, outcome, gt_det, gt_iou)
