"""Evaluation reports: per-class AP table, precision-recall curves and a confusion matrix, as files."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from detkit.evaluation.cocoeval import RECALL_THRESHOLDS, CocoEvalResult
from detkit.evaluation.cocojson import GroundTruth, Results, write_json
from detkit.evaluation.errors import most_confused, normalize_rows
from detkit.evaluation.matching import group_pairs, group_ranks, greedy_match, pair_iou

__all__ = ["per_class_table", "format_table", "pr_curves", "confusion_matrix", "plot_confusion", "write_report"]

_COLUMNS = ("class", "category_id", "num_gt", "num_dt", "ap", "ap50", "ap75", "ar100")
#: Most classes drawn in the confusion picture and as per-class precision-recall curves (legibility).
CONFUSION_LIMIT = 20
PR_LIMIT = 10


def per_class_table(result: CocoEvalResult, voc_ap50: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per category: COCO AP (IoU .50:.95), AP50, AP75, AR@100 and counts; ``-1``: no ground truth.

    Args:
        result: from :func:`~detkit.evaluation.cocoeval.evaluate_coco`.
        voc_ap50: optional ``float64[K]`` VOC AP per category (column ``voc_ap50``).
    """
    rows = []
    for k, (cid, name) in enumerate(zip(result.category_ids.tolist(), result.category_names)):
        row = {
            "class": name,
            "category_id": cid,
            "num_gt": int(result.num_gt[k]),
            "num_dt": int(result.num_dt[k]),
            "ap": result.category_stat(k),
            "ap50": result.category_stat(k, iou=0.5),
            "ap75": result.category_stat(k, iou=0.75),
            "ar100": result.category_stat(k, ap=False),
        }
        if voc_ap50 is not None:
            row["voc_ap50"] = -1.0 if np.isnan(voc_ap50[k]) else float(voc_ap50[k])
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows of :func:`per_class_table` as an aligned text table (``-`` where a class has no ground truth)."""
    if not rows:
        return "(no categories)"
    keys = list(rows[0])
    cells = [[(f"{v:.3f}" if v >= 0 else "-") if isinstance(v, float) else str(v) for v in r.values()] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda values: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))  # noqa: E731
    return "\n".join([line(keys), *(line(c) for c in cells)])


def pr_curves(result: CocoEvalResult, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCO's 101-point interpolated precision-recall curves at one IoU threshold (all areas, 100 dets).

    Returns:
        ``(recall float64[R], precision float64[K, R] per category (-1: no ground truth),
        overall float64[R] mean over categories with ground truth)``.
    """
    from detkit.evaluation.cocoeval import IOU_THRESHOLDS

    t = int(np.flatnonzero(IOU_THRESHOLDS == iou)[0])
    per_class = result.precision[t, :, :, 0, -1].T  # [R, K] -> [K, R]
    valid = per_class[:, 0] > -1
    overall = per_class[valid].mean(axis=0) if valid.any() else -np.ones(len(RECALL_THRESHOLDS))
    return RECALL_THRESHOLDS.copy(), per_class, overall


def confusion_matrix(gt: GroundTruth, dt: Results, iou_threshold: float = 0.5, score_threshold: float = 0.25) -> np.ndarray:
    """Class confusion at one IoU, with a background row and column -> ``int64[K+1, K+1]``.

    Rows are the true class (last row: background, i.e. a detection that matches nothing), columns
    the predicted class (last column: background, i.e. a missed ground truth). Detections scoring at
    least ``score_threshold`` are matched per image, whatever their class, by COCO's greedy rule (by
    descending score, to the free ground truth of highest IoU >= ``iou_threshold``); those landing on
    a crowd region are left out, as are crowd ground truths.
    """
    num_k = len(gt.category_ids)
    keep = np.flatnonzero(dt.scores >= score_threshold)
    order = keep[np.lexsort((-dt.scores[keep], dt.image[keep]))]  # by image, then descending score
    rank = group_ranks(dt.image[order])
    gt_order = np.argsort(gt.image, kind="stable")
    pair_det, pair_pos = group_pairs(dt.image[order], gt.image[gt_order])
    pair_gt = gt_order[pair_pos]
    iou = pair_iou(dt.boxes[order[pair_det]], gt.boxes[pair_gt], gt.iscrowd[pair_gt])
    crowd = gt.iscrowd
    matched = greedy_match(pair_det, pair_gt, iou, rank, crowd[None], crowd, np.array([iou_threshold]), len(order))[0, 0]
    matrix = np.zeros((num_k + 1, num_k + 1), dtype=np.int64)
    pred = dt.category[order]
    hit = matched >= 0
    on_object = hit & ~crowd[matched.clip(min=0)]
    np.add.at(matrix, (gt.category[matched[on_object]], pred[on_object]), 1)
    np.add.at(matrix, (num_k, pred[~hit]), 1)
    found = np.zeros(len(crowd), dtype=bool)
    found[matched[on_object]] = True
    np.add.at(matrix, (gt.category[~found & ~crowd], num_k), 1)
    return matrix


def _plot_pr(path: Path, recall: np.ndarray, curves: dict[str, np.ndarray], title: str) -> None:
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, no global figure list

    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    for label, precision in curves.items():
        ax.plot(recall, precision, label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(title, fontsize="medium" if len(title) < 50 else "small")
    ax.grid(alpha=0.3)
    if 0 < len(curves) <= 20:
        ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_confusion(
    path: str | Path, matrix: np.ndarray, names: list[str], score_threshold: float = 0.25, iou_threshold: float = 0.5,
    limit: int = CONFUSION_LIMIT,
) -> str:  # fmt: skip
    """Draw a :func:`confusion_matrix` as counts and as row shares side by side (PNG at ``path``).

    With more than ``limit`` classes only the ``limit`` most confused ones (:func:`most_confused`)
    and background are drawn. Returns the figure's title, which states what is drawn.
    """
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, no global figure list

    shown = most_confused(matrix, limit)
    sub = matrix[np.ix_(shown, shown)]
    labels = [*(names[k] for k in shown[:-1]), "background"]
    n = len(labels)
    title = f"confusion at IoU >= {iou_threshold:g}, score >= {score_threshold:g}"
    if len(shown) < len(matrix):
        title += f" ({n - 1} of {len(names)} classes: the most confused)"
    side = min(max(3.0, 0.36 * n + 1.6), 14.0)
    fig = Figure(figsize=(2 * side + 1.2, side + 1.0))
    axes = fig.subplots(1, 2)
    shares = normalize_rows(sub)
    panels = ((axes[0], np.log1p(sub), sub, "counts", lambda v: str(v) if v else ""),
              (axes[1], shares, shares, "share of each row (%)", lambda v: f"{100 * v:.0f}" if v >= 0.005 else ""))  # fmt: skip
    for ax, shade, values, name, text in panels:
        ax.imshow(shade, cmap="Blues", vmin=0, vmax=max(float(shade.max()), 1e-9))
        ax.set_xticks(range(n), labels, rotation=90 if n > 8 else 30, ha="center" if n > 8 else "right", fontsize="small")
        ax.set_yticks(range(n), labels, fontsize="small")
        ax.set_xlabel("predicted (background: missed)")
        ax.set_ylabel("true (background: detection on nothing)")
        ax.set_title(name)
        ax.axhline(n - 1.5, color="gray", linewidth=0.8)
        ax.axvline(n - 1.5, color="gray", linewidth=0.8)
        if n <= 25:
            high = float(shade.max()) * 0.6
            for (i, j), v in np.ndenumerate(values):
                ax.text(j, i, text(v), ha="center", va="center", fontsize="x-small" if n > 12 else "small",
                        color="white" if shade[i, j] > high else "black")  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return title


def pr_subset(names: list[str], per_class: np.ndarray, limit: int = PR_LIMIT) -> tuple[dict[str, np.ndarray], str]:
    """Per-class curves to draw (classes with ground truth): all, or past ``limit`` the ``limit // 2``
    lowest and highest by AP (area under the curve) -> ``(name -> precision, title)``."""
    valid = [(name, p) for name, p in zip(names, per_class) if p[0] > -1]
    title = "precision-recall per class (IoU 0.5)"
    if len(valid) <= limit:
        return dict(valid), title
    ranked = sorted(valid, key=lambda item: float(item[1].mean()))
    half = limit // 2
    chosen = ranked[:half] + ranked[-(limit - half):]
    return {f"{name} ({p.mean():.2f})": p for name, p in chosen}, f"{title}: {half} lowest and {limit - half} highest AP50 of {len(valid)}"


def write_report(
    out_dir: str | Path,
    stats: dict[str, float],
    result: CocoEvalResult,
    confusion: np.ndarray,
    voc_ap50: np.ndarray | None = None,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """Write ``metrics.json``, ``per_class.csv``, ``pr_curves.csv``, ``pr_overall.png``,
    ``pr_per_class.png``, ``confusion_matrix.csv`` and ``confusion_matrix.png`` to ``out_dir``.

    ``score_threshold`` and ``iou_threshold`` are those ``confusion`` was counted at (for its title).

    Returns:
        The per-class rows (as in ``per_class.csv``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", stats)
    rows = per_class_table(result, voc_ap50)
    with (out / "per_class.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)

    names = result.category_names
    curves = {}
    with (out / "pr_curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["iou", "class", *(f"{r:.2f}" for r in RECALL_THRESHOLDS)])
        for iou in (0.5, 0.75):
            recall, per_class, overall = pr_curves(result, iou)
            writer.writerow([iou, "all", *overall.tolist()])
            writer.writerows([iou, name, *p.tolist()] for name, p in zip(names, per_class))
            curves[f"IoU {iou}"] = overall
    _plot_pr(out / "pr_overall.png", RECALL_THRESHOLDS, curves, "precision-recall, all classes")
    recall, per_class, _ = pr_curves(result, 0.5)
    _plot_pr(out / "pr_per_class.png", recall, *pr_subset(names, per_class))

    labels = [*names, "background"]
    with (out / "confusion_matrix.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *labels])
        writer.writerows([label, *row] for label, row in zip(labels, confusion.tolist()))
    plot_confusion(out / "confusion_matrix.png", confusion, names, score_threshold, iou_threshold)
    return rows
