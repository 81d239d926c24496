"""One HTML page of an evaluation: run summary, curves, COCO stats, per-class table, confusion, TIDE errors, failure galleries."""

from __future__ import annotations

import datetime
import html
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from detkit.evaluation import html as h
from detkit.evaluation.cocoeval import COCO_STAT_NAMES, CocoEvalResult, evaluate_coco
from detkit.evaluation.cocojson import GroundTruth, Results
from detkit.evaluation.errors import box_geometry, costly_images
from detkit.evaluation.report import CONFUSION_LIMIT, confusion_matrix, write_report
from detkit.evaluation.run_folder import (
    RunFolder,
    checkpoint_facts,
    export_rows,
    last_row,
    library_versions,
    machine,
    wall_time,
)
from detkit.evaluation.tide import DETECTION_OUTCOMES, ERROR_TYPES, GROUND_TRUTH_OUTCOMES, assign_errors, evaluate_tide
from detkit.ops.xywh import xywh_to_xyxy
from detkit.pictures.galleries import OUTCOME_COLORS, OUTCOME_LABELS, compare_image, false_positive_maps, save_cam_panels

__all__ = ["ImageLookup", "SECTIONS", "write_html_report", "write_run_report"]

#: ``image_id -> uint8 [H, W, 3]`` pixels, or ``None`` where not available.
ImageLookup = Callable[[int], "np.ndarray | None"]
#: The report's sections, by HTML id, in page order (each is always present, with a note when empty).
SECTIONS = ("summary", "curves", "coco", "per-class", "pr", "confusion", "errors", "galleries", "geometry", "deployment")

_STAT_MEANINGS = {
    "map": "AP at IoU .50:.95 (COCO's main number)", "map_50": "AP at IoU .50", "map_75": "AP at IoU .75",
    "map_small": "AP, objects < 32² px", "map_medium": "AP, objects 32²-96² px", "map_large": "AP, objects > 96² px",
    "mar_1": "AR, 1 detection per image", "mar_10": "AR, 10 detections per image", "mar_100": "AR, 100 detections per image",
    "mar_small": "AR, small objects", "mar_medium": "AR, medium objects", "mar_large": "AR, large objects",
}  # fmt: skip
_ERROR_MEANINGS = {
    "classification": "right place (IoU >= the threshold with an object of another class), wrong class",
    "localization": "right class, box overlapping its object only 0.1-0.5 (IoU)",
    "both": "wrong class and a loose box",
    "duplicate": "a second detection of an object already found",
    "background": "a detection overlapping no object (IoU <= 0.1)",
    "missed": "an object no detection found or came near (with the right class or box)",
}


class _Images:
    """Pixels by image index with a note of what failed (a missing file never stops the report)."""

    def __init__(self, gt: GroundTruth, lookup: ImageLookup | None) -> None:
        self.gt, self.lookup, self.failed = gt, lookup, 0

    def __call__(self, image: int) -> np.ndarray | None:
        if self.lookup is None:
            return None
        try:
            return self.lookup(int(self.gt.image_ids[image]))
        except (OSError, ValueError, IndexError, KeyError):
            self.failed += 1
            return None


def _evaluated(gt: GroundTruth, dt: Results, source: dict[str, Any], score_threshold: float) -> str:
    crowd = int(gt.iscrowd.sum())
    with_gt = len(np.unique(gt.image[~gt.iscrowd]))
    facts = {**source, "images": len(gt.image_ids), "ground-truth boxes": f"{len(gt.boxes) - crowd} (+ {crowd} crowd regions)",
             "images without ground truth": len(gt.image_ids) - with_gt, "classes": len(gt.category_ids),
             "detections": f"{len(dt.scores)} ({int((dt.scores >= score_threshold).sum())} scoring >= {score_threshold:g})"}  # fmt: skip
    return "<h3>What was evaluated</h3>" + h.definitions(facts)


def _run_facts(run: RunFolder | None) -> str:
    body = ""
    if run is not None and (run.checkpoint or run.metrics or run.config):
        trained: dict[str, Any] = {"run folder": run.root}
        if run.checkpoint is not None:
            trained["checkpoint"] = run.checkpoint
            trained.update(checkpoint_facts(run.checkpoint))
        trained["wall time"] = wall_time(run) or "not logged"
        body += "<h3>Training</h3>" + h.definitions(trained)
        if run.config is not None:
            body += h.details(f"config ({run.config})", run.config.read_text(errors="replace"))
        else:
            body += h.note("No saved config.yaml found in the run folder.")
    body += "<h3>This machine</h3>" + h.definitions(machine())
    body += "<h3>Versions</h3>" + h.definitions(library_versions())
    return body


def _curves(page: h.Page, figures: Path, run: RunFolder | None) -> str:
    if run is None or run.metrics is None:
        return h.note("No training log (csv/version_N/metrics.csv with train/ columns) in the run folder: no curves.")
    from detkit.pictures.curves import draw_curves, read_metrics

    per_step, per_epoch = read_metrics(run.metrics)
    path = figures / "curves.png"
    draw_curves(per_step, per_epoch, title=str(run.metrics.parent)).savefig(path, dpi=90)
    last = last_row(run.metrics, "val/")
    text = ", ".join(f"{k} {last[k]:.3f}" for k in ("val/map", "val/map_50", "val/loss") if k in last)
    return h.figure(page.image(path), f"From {run.metrics}. Last validation: {text or 'none logged'}.")


def _coco(stats: dict[str, float], run: RunFolder | None) -> str:
    logged = last_row(run.test_metrics, "test/") if run is not None and run.test_metrics is not None else {}
    columns = ["stat", "value", "meaning"] + (["logged by detkit test"] if logged else [])
    rows = [[k, stats[k], _STAT_MEANINGS[k]] + ([logged.get(f"test/{k}", float("nan"))] if logged else []) for k in COCO_STAT_NAMES]
    text = h.note("-: not defined (no ground truth in that size range).")
    return h.table(columns, rows, sortable=False, scroll=False) + text


def _per_class(rows: list[dict[str, Any]], tide: Any) -> str:
    short = {"classification": "cls", "localization": "loc", "both": "both", "duplicate": "dupe", "background": "bkg", "missed": "miss"}
    columns = ["class", "id", "gt", "dets", "AP", "AP50", "AP75", "AR100", *(f"dAP {short[n]}" for n in ERROR_TYPES)]
    table = [[r["class"], r["category_id"], r["num_gt"], r["num_dt"], r["ap"], r["ap50"], r["ap75"], r["ar100"],
              *(float(tide.category_errors[n][k]) / 100 for n in ERROR_TYPES)] for k, r in enumerate(rows)]  # fmt: skip
    hint = (f"{len(rows)} classes: the table scrolls; " if len(rows) > 15 else "") + (
        "click a header to sort. AP columns are COCO's (0-1); dAP columns are the AP50 each TIDE error type costs that "
        "class alone (0-1; cls: classification, loc: localization, both, dupe: duplicate, bkg: background, miss: "
        "missed; see Errors). -: no ground truth.")
    return h.note(hint) + h.table(columns, table, table_id="per-class-table")


def _confusion(page: h.Page, out: Path, matrix: np.ndarray, names: list[str], score_threshold: float, iou: float) -> str:
    k = len(names)
    caption = (f"Detections scoring >= {score_threshold:g} matched to ground truth at IoU >= {iou:g}, whatever their class "
               "(one match per object, highest score first). Rows: the true class; columns: the predicted class. "
               "The background row counts detections that matched no object (false positives on background); the "
               "background column counts objects no detection matched (missed). Right: each row as shares of that "
               "row's total.")  # fmt: skip
    if k > CONFUSION_LIMIT:
        caption += f" Only the {CONFUSION_LIMIT} of {k} classes most confused are drawn; confusion_matrix.csv has all."
    body = h.figure(page.image(out / "confusion_matrix.png"), caption)
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    off[k, k] = 0
    ranked = zip(*np.unravel_index(np.argsort(-off, axis=None, kind="stable"), off.shape))
    pairs = [(i, j) for i, j in ranked if off[i, j] > 0][:10]
    if pairs:
        label = lambda i: names[i] if i < k else "background"  # noqa: E731
        rows = [[label(i), label(j), int(off[i, j]), float(off[i, j] / max(matrix[i].sum(), 1))] for i, j in pairs]
        body += "<h3>Largest confusions</h3>" + h.table(["true", "predicted", "count", "share of row"], rows, scroll=False)
    return body


def _errors(page: h.Page, figures: Path, tide: Any, iou: float) -> str:
    from detkit.pictures.error_charts import plot_error_decomposition

    path = plot_error_decomposition(tide, figures / "errors.png")
    caption = (f"TIDE (Bolya et al. 2020) at IoU {iou:g}: the AP (points, 0-100) gained if every error of one type were "
               "fixed, the others left as they are; bars do not add up to 100 - AP. The grey bars fix all false "
               "positives / all false negatives at once.")  # fmt: skip
    rows = [[n, tide.errors[n], tide.counts[n], _ERROR_MEANINGS[n]] for n in ERROR_TYPES]
    counts = h.table(["error", "dAP", "count", "meaning"], rows, sortable=False, scroll=False, digits=2)
    return h.figure(page.image(path), caption) + counts


def _legend() -> str:
    items = "".join(
        f'<span><i style="background: rgb{OUTCOME_COLORS[k]}"></i>{html.escape(v)}</span>' for k, v in OUTCOME_LABELS.items()
    )
    return f'<p class="legend">{items}</p>'


def _galleries(page: h.Page, figures: Path, gt: GroundTruth, dt: Results, assignment: Any, images: _Images,
               model: Any, score_threshold: float, top: int, gradcam_top: int) -> str:  # fmt: skip
    body = _legend() + h.note(
        "Per error type, the images where it costs most: detection errors weigh the share of their class's true "
        "positives they outscore, missed objects 1 / their class's object count. Left: ground truth (coloured by "
        "whether it was found); right: detections with score and IoU (with the object they are judged against).")
    error_codes = [DETECTION_OUTCOMES.index(n) for n in ERROR_TYPES[:5]]
    for error in ERROR_TYPES:
        body += f"<h3>{html.escape(error)}</h3>"
        chosen = costly_images(gt, dt, assignment, error, top)
        if not chosen:
            body += h.note(f"No {error} errors.")
            continue
        for rank, item in enumerate(chosen):
            image_id = int(gt.image_ids[item.image])
            shown = item.rows[:3]
            above = (dt.image == item.image) & (dt.scores >= score_threshold) & np.isin(assignment.detection, error_codes)
            drawn = assignment.ground_truth_detection[shown] if error == "missed" else shown
            others = len(set(np.flatnonzero(above).tolist()) - set(drawn.tolist()))
            header = (f"image {image_id}: {len(item.rows)} {error}, {len(shown)} in bold; true positives >= {score_threshold:g} "
                      f"drawn, {others} other errors >= {score_threshold:g} not")  # fmt: skip
            picture = compare_image(gt, dt, assignment, item.image, images(item.image), score_threshold,
                                    shown, header, missed=error == "missed")  # fmt: skip
            path = figures / f"gallery_{error}_{rank}.png"
            Image.fromarray(picture).save(path)
            body += h.figure(page.image(path), alt=header)
    if images.lookup is None:
        body += h.note("Image files were not available: boxes are drawn on grey.", warn=True)
    elif images.failed:
        body += h.note(f"{images.failed} image(s) could not be read: their boxes are drawn on grey.", warn=True)
    cams = _cams(page, figures, gt, dt, assignment, images, model, gradcam_top)
    return body + "<h3>Where the top false positives looked (HiResCAM)</h3>" + cams


def _cams(page: h.Page, figures: Path, gt: GroundTruth, dt: Results, assignment: Any, images: _Images, model: Any,
          top: int) -> str:  # fmt: skip
    if model is None or not hasattr(model, "letterbox"):
        return h.note("Needs a checkpoint (detkit report with a run folder's checkpoint): not available here.")
    errors = [DETECTION_OUTCOMES.index(n) for n in ERROR_TYPES[:5]]
    rows = np.flatnonzero(np.isin(assignment.detection, errors))
    rows = rows[np.argsort(-dt.scores[rows], kind="stable")][:top]
    items = []
    try:
        for image in dict.fromkeys(dt.image[rows].tolist()):
            mine = rows[dt.image[rows] == image]
            pixels = images(image)
            if pixels is None:
                continue
            names = [gt.category_names[c] for c in dt.category[mine]]
            maps = false_positive_maps(model, pixels, xywh_to_xyxy(dt.boxes[mine]), names, dt.scores[mine].tolist())
            for row, name, found in zip(mine, names, maps):
                if found is not None:
                    outcome = DETECTION_OUTCOMES[assignment.detection[row]]
                    items.append({**found, "title": f"{outcome}: {name} {dt.scores[row]:.2f} (image {gt.image_ids[image]})"})
    except (ImportError, AttributeError, RuntimeError) as error:  # no pytorch-grad-cam, an export, ...
        return h.note(f"Grad-CAM not available: {error}")
    if not items:
        return h.note("No false positive could be mapped (none, no image pixels, or the model did not reproduce them).")
    path = save_cam_panels(items, figures / "gradcam_false_positives.png")
    caption = ("Each false positive's own class logit, differentiated at the point it was decoded from (HiResCAM, "
               "as detkit explain --gradcam), over the letterboxed image: where the model saw the object it wrongly reported.")  # fmt: skip
    return h.figure(page.image(path), caption)


def _geometry(page: h.Page, figures: Path, gt: GroundTruth, assignment: Any, image_sizes: dict | None) -> str:
    from detkit.pictures.error_charts import plot_geometry

    real = ~gt.iscrowd
    if not real.any():
        return h.note("No ground truth: nothing to compare.")
    geometry = {k: v[real] for k, v in box_geometry(gt, image_sizes).items()}
    found = assignment.ground_truth[real] == GROUND_TRUTH_OUTCOMES.index("found")
    path = plot_geometry(geometry, found, figures / "geometry.png")
    caption = (f"{int(found.sum())} objects found (matched by a true positive), {int((~found).sum())} not found "
               "(missed, or only hit with a wrong class or loose box). The line is the share not found per bin: "
               "where it rises, the detector fails on small, thin or border objects.")  # fmt: skip
    return h.figure(page.image(path), caption)


def _deployment(run: RunFolder | None, rows: list[dict[str, Any]] | None) -> str:
    rows = rows if rows is not None else (export_rows(run) if run is not None else [])
    if not rows:
        return h.note("No exported models (export/*.onnx, *.torchscript): `detkit export --ckpt_path ...` writes them.")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    text = ("Each model run over the whole test split on this machine, as `detkit evaluate` runs it (time includes "
            "loading and letterboxing the images)." if "mAP" in columns else
            "Accuracy and speed not measured: `detkit report RUN_DIR --measure_exports` scores each export on the test split.")  # fmt: skip
    return h.table(columns, [[r.get(c, "-") for c in columns] for r in rows], scroll=False) + h.note(text)


def write_html_report(
    out_dir: str | Path, gt: GroundTruth, dt: Results, *, images: ImageLookup | None = None,
    image_sizes: dict[int, tuple[int, int]] | None = None, model: Any = None, run: RunFolder | None = None,
    source: dict[str, Any] | None = None, result: CocoEvalResult | None = None, rows: list[dict[str, Any]] | None = None,
    confusion: np.ndarray | None = None, export_table: list[dict[str, Any]] | None = None, score_threshold: float = 0.25,
    iou_threshold: float = 0.5, top: int = 6, gradcam_top: int = 4, embed: bool = False, notes: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    """Write ``out_dir/report.html`` (figures under ``out_dir/figures``, plus :func:`write_report`'s files).

    Args:
        out_dir: the report folder.
        gt, dt: what was evaluated (e.g. a test split and a model's detections on it).
        images: pixels by image id, for the galleries (else boxes on grey).
        image_sizes: ``image_id -> (height, width)``, for the distance-to-border histogram.
        model: a checkpoint's :class:`~detkit.predictors.Predictor`, for Grad-CAM of false positives.
        run: the run folder (config, training curves, checkpoint facts, exports).
        source: facts about what was evaluated, shown first (e.g. the checkpoint and data).
        result, rows, confusion: already computed by the caller (``detkit evaluate``), else computed here.
        export_table: rows for the deployment table (default: the run's exports, unmeasured).
        score_threshold, iou_threshold: of the confusion matrix and the galleries (IoU also TIDE's).
        top: gallery images per error type; gradcam_top: false positives mapped with Grad-CAM.
        embed: images inside the HTML as base64 (one file) instead of files beside it.
        notes: warnings shown at the top.

    Returns:
        The HTML file's path.
    """
    out = Path(out_dir)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for old in figures.glob("*.png"):  # an earlier report's galleries may have had more images
        old.unlink()
    result = result if result is not None else evaluate_coco(gt, dt)
    stats = {k: result.stats[k] for k in COCO_STAT_NAMES}
    if confusion is None:
        confusion = confusion_matrix(gt, dt, iou_threshold, score_threshold)
    if rows is None:
        rows = write_report(out, stats, result, confusion, score_threshold=score_threshold, iou_threshold=iou_threshold)
    tide = evaluate_tide(gt, dt, pos_threshold=iou_threshold)
    assignment = assign_errors(gt, dt, pos_threshold=iou_threshold)
    name = run.root.name if run is not None else out.name
    subtitle = f"{len(gt.image_ids)} images, {len(gt.category_ids)} classes; mAP {stats['map']:.3f}, AP50 {stats['map_50']:.3f}"
    page = h.Page(out, f"detkit report: {name}", f"{subtitle}; written {datetime.datetime.now():%Y-%m-%d %H:%M}", embed)
    pixels = _Images(gt, images)
    warnings = "".join(h.note(n, warn=True) for n in notes)
    if not len(gt.image_ids):
        warnings += h.note("The evaluated split has no images: every number below is undefined.", warn=True)
    page.add("summary", "Run summary", warnings + _evaluated(gt, dt, source or {}, score_threshold) + _run_facts(run))
    page.add("curves", "Training curves", _curves(page, figures, run))
    page.add("coco", "COCO stats", _coco(stats, run))
    page.add("per-class", "Per class", _per_class(rows, tide))
    pr_caption = "Left: all classes at IoU 0.5 and 0.75 (101-point interpolated, as COCO). Right: per class at IoU 0.5."
    pr_body = h.figure(page.image(out / "pr_overall.png"), pr_caption) + h.figure(page.image(out / "pr_per_class.png"))
    page.add("pr", "Precision-recall", pr_body)
    names = list(gt.category_names)
    page.add("confusion", "Confusion matrix", _confusion(page, out, confusion, names, score_threshold, iou_threshold))
    page.add("errors", "Errors (TIDE)", _errors(page, figures, tide, iou_threshold))
    galleries = _galleries(page, figures, gt, dt, assignment, pixels, model, score_threshold, top, gradcam_top)
    page.add("galleries", "Failure galleries", galleries)
    page.add("geometry", "Missed vs found objects", _geometry(page, figures, gt, assignment, image_sizes))
    page.add("deployment", "Deployment", _deployment(run, export_table))
    return page.write()


def write_run_report(out_dir: str | Path, run: RunFolder, reason: str, embed: bool = False) -> Path:
    """Write ``out_dir/report.html`` for a run without test results: its summary, training curves and
    exports, every other section saying why it is empty (``reason``)."""
    out = Path(out_dir)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    written = f"no test results; written {datetime.datetime.now():%Y-%m-%d %H:%M}"
    page = h.Page(out, f"detkit report: {run.root.name}", written, embed)
    titles = {"coco": "COCO stats", "per-class": "Per class", "pr": "Precision-recall", "confusion": "Confusion matrix",
              "errors": "Errors (TIDE)", "galleries": "Failure galleries", "geometry": "Missed vs found objects"}  # fmt: skip
    page.add("summary", "Run summary", h.note(reason, warn=True) + _run_facts(run))
    page.add("curves", "Training curves", _curves(page, figures, run))
    for section, title in titles.items():
        page.add(section, title, h.note(f"No test results: {reason}"))
    page.add("deployment", "Deployment", _deployment(run, None))
    return page.write()
