"""Failure galleries: an image's ground truth beside its detections, boxes coloured by TIDE outcome; Grad-CAM of false positives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from detkit.evaluation.cocojson import GroundTruth, Results
from detkit.evaluation.tide import DETECTION_OUTCOMES, GROUND_TRUTH_OUTCOMES, ErrorAssignment
from detkit.ops.xywh import xywh_to_xyxy

__all__ = [
    "BoxMark",
    "OUTCOME_COLORS",
    "OUTCOME_LABELS",
    "SHORT_LABELS",
    "compare_image",
    "draw_side_by_side",
    "false_positive_maps",
    "save_cam_panels",
]

#: One colour per outcome (Okabe-Ito based), the same in every picture and in the report's legend.
OUTCOME_COLORS: dict[str, tuple[int, int, int]] = {
    "true_positive": (0, 158, 115),
    "found": (0, 158, 115),
    "classification": (230, 159, 0),
    "localization": (86, 180, 233),
    "both": (204, 121, 167),
    "duplicate": (0, 84, 160),
    "background": (213, 94, 0),
    "missed": (240, 228, 66),
    "found_with_error": (150, 150, 150),
    "crowd": (255, 255, 255),
    "ignored": (200, 200, 200),
    "not_evaluated": (200, 200, 200),
}
#: How the legend of a picture names each outcome (short); :data:`OUTCOME_LABELS` explains them.
SHORT_LABELS: dict[str, str] = {
    "true_positive": "true positive / found",
    "classification": "classification",
    "localization": "localization",
    "both": "class and box",
    "duplicate": "duplicate",
    "background": "background",
    "missed": "missed (dashed)",
    "found_with_error": "found only with an error",
}
#: How the report's legend names each outcome.
OUTCOME_LABELS: dict[str, str] = {
    "true_positive": "true positive / found",
    "classification": "classification error (right box, wrong class)",
    "localization": "localization error (right class, IoU 0.1-0.5)",
    "both": "wrong class and box",
    "duplicate": "duplicate (its object already found)",
    "background": "background (overlaps no object)",
    "missed": "missed ground truth (dashed)",
    "found_with_error": "ground truth found only with a wrong class or box",
}


@dataclass
class BoxMark:
    """A box to draw: ``box`` xyxy in the image's pixels, its colour and caption; ``dashed`` and
    ``bold`` lines (missed ground truth, the errors a gallery image was chosen for)."""

    box: Sequence[float]
    color: tuple[int, int, int]
    caption: str
    dashed: bool = False
    bold: bool = False


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.2126 * fill[0] + 0.7152 * fill[1] + 0.0722 * fill[2] > 140 else (255, 255, 255)


def _rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], color: tuple[int, int, int], width: int, dashed: bool) -> None:
    if not dashed:
        draw.rectangle(box, outline=color, width=width)
        return
    x1, y1, x2, y2 = box
    dash = 4 * width + 2
    for a, b, fixed, horizontal in ((x1, x2, y1, True), (x1, x2, y2, True), (y1, y2, x1, False), (y1, y2, x2, False)):
        for start in np.arange(a, b, 2 * dash):
            end = min(start + dash, b)
            draw.line((start, fixed, end, fixed) if horizontal else (fixed, start, fixed, end), fill=color, width=width)


def _panel(image: np.ndarray, marks: Sequence[BoxMark], scale: float, font: Any) -> Image.Image:
    """``image`` resized by ``scale`` with ``marks`` drawn (boxes first, then captions, bold ones on top)."""
    height, width = image.shape[:2]
    canvas = Image.fromarray(np.ascontiguousarray(image)).resize((max(1, round(width * scale)), max(1, round(height * scale))))
    draw = ImageDraw.Draw(canvas)
    order = sorted(range(len(marks)), key=lambda k: marks[k].bold)
    for k in order:
        m = marks[k]
        _rectangle(draw, [v * scale for v in m.box], m.color, 4 if m.bold else 2, m.dashed)
    for k in order:
        m = marks[k]
        if not m.caption:
            continue
        x1, y1 = m.box[0] * scale, m.box[1] * scale
        left, top, right, bottom = draw.textbbox((0, 0), m.caption, font=font)
        w, h = right - left + 4, bottom - top + 4
        lx = min(max(0.0, x1), max(0.0, canvas.width - w))
        ly = y1 - h if y1 - h >= 0 else max(0.0, min(y1, canvas.height - h))
        draw.rectangle((lx, ly, lx + w, ly + h), fill=m.color)
        draw.text((lx + 2 - left, ly + 2 - top), m.caption, fill=_text_color(m.color), font=font)
    return canvas


def draw_side_by_side(
    image: np.ndarray, left: Sequence[BoxMark], right: Sequence[BoxMark], titles: tuple[str, str], header: str = "",
    legend: Sequence[str] = (), side: int = 420,
) -> np.ndarray:  # fmt: skip
    """Two copies of ``image`` (``uint8 [H, W, 3]``) scaled so the longer side is ``side`` pixels,
    ``left`` marks on the first and ``right`` on the second, titled, with a ``header`` line above and
    a legend of the ``legend`` outcomes (keys of :data:`OUTCOME_COLORS`) below -> ``uint8 [H', W', 3]``."""
    scale = side / max(image.shape[:2])
    font = ImageFont.load_default(size=13)
    panels = [_panel(image, marks, scale, font) for marks in (left, right)]
    gap, line = 12, 20
    width = max(panels[0].width * 2 + gap, round(font.getlength(header)) + 4, *(round(font.getlength(t)) + 4 for t in titles))
    swatches = [(OUTCOME_COLORS[k], SHORT_LABELS.get(k, k)) for k in legend]
    legend_rows, x = 1 if swatches else 0, 0
    for _, text in swatches:  # wrap the legend over as many rows as it needs
        w = 22 + round(font.getlength(text)) + 14
        if x and x + w > width:
            legend_rows, x = legend_rows + 1, 0
        x += w
    top = line * (2 if header else 1)
    out = Image.new("RGB", (width, top + panels[0].height + line * legend_rows + 4), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    if header:
        draw.text((0, 2), header, fill=(0, 0, 0), font=font)
    for k, (panel, title) in enumerate(zip(panels, titles)):
        x0 = k * (panel.width + gap)
        draw.text((x0, top - line + 2), title, fill=(60, 60, 60), font=font)
        out.paste(panel, (x0, top))
    x, y = 0, top + panels[0].height + 4
    for color, text in swatches:
        w = 22 + round(font.getlength(text)) + 14
        if x and x + w > width:
            x, y = 0, y + line
        draw.rectangle((x, y + 2, x + 14, y + 16), fill=color, outline=(80, 80, 80))
        draw.text((x + 20, y + 2), text, fill=(0, 0, 0), font=font)
        x += w
    return np.asarray(out)


def _num(value: float) -> str:
    """``0.85`` -> ``.85`` (captions stay short)."""
    text = f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


def compare_image(
    gt: GroundTruth, dt: Results, assignment: ErrorAssignment, image: int, pixels: np.ndarray | None,
    score_threshold: float = 0.25, highlight: Sequence[int] = (), header: str = "", side: int = 310,
    missed: bool = False,
) -> np.ndarray:  # fmt: skip
    """Ground truth beside detections of image ``image`` (index into ``gt.image_ids``), each box in its
    outcome's colour (:data:`OUTCOME_COLORS`) with class, score and IoU.

    Left: every ground truth, captioned with the IoU of what found it (dashed: missed). Right: the true
    positives scoring ``>= score_threshold`` and the ``highlight`` detection rows in bold (the errors
    the image was chosen for); with ``missed``, ``highlight`` are ground-truth rows, drawn bold on the
    left, and the right adds the detection overlapping each most. Other detections are left out (the
    header can count them). Without ``pixels`` (``uint8 [H, W, 3]``) the boxes are drawn on grey.
    """
    names = gt.category_names
    highlight = np.asarray(highlight, dtype=np.int64)
    gt_rows = np.flatnonzero(gt.image == image)
    tp = assignment.detection == DETECTION_OUTCOMES.index("true_positive")
    dt_rows = np.flatnonzero((dt.image == image) & tp & (dt.scores >= score_threshold))
    bold = assignment.ground_truth_detection[highlight] if missed else highlight
    dt_rows = np.union1d(dt_rows, bold[bold >= 0])
    dt_rows = dt_rows[np.argsort(dt.scores[dt_rows], kind="stable")]
    gt_xyxy, dt_xyxy = xywh_to_xyxy(gt.boxes[gt_rows]), xywh_to_xyxy(dt.boxes[dt_rows])
    if pixels is None:
        extent = np.concatenate([gt_xyxy, dt_xyxy]).max(axis=0) if len(gt_rows) + len(dt_rows) else np.array([0, 0, 64, 64])
        pixels = np.full((max(16, int(np.ceil(extent[3])) + 2), max(16, int(np.ceil(extent[2])) + 2), 3), 128, np.uint8)
    left, right, seen = [], [], set()
    for row, box in zip(gt_rows, gt_xyxy):
        outcome = GROUND_TRUTH_OUTCOMES[assignment.ground_truth[row]]
        iou, name = assignment.ground_truth_iou[row], names[gt.category[row]]
        caption = {"found": f"{name} IoU {_num(iou)}", "crowd": f"{name} crowd", "found_with_error": f"{name} wrong class/box",
                   "missed": f"{name} missed" + (f" (IoU {_num(iou)})" if iou > 0 else "")}[outcome]  # fmt: skip
        left.append(BoxMark(box, OUTCOME_COLORS[outcome], caption, dashed=outcome == "missed", bold=missed and row in highlight))
        seen.add("true_positive" if outcome == "found" else outcome)
    for row, box in zip(dt_rows, dt_xyxy):
        outcome = DETECTION_OUTCOMES[assignment.detection[row]]
        caption = f"{names[dt.category[row]]} {_num(dt.scores[row])}"
        partner = assignment.detection_gt[row]
        if partner >= 0:
            caption += f" IoU {_num(assignment.detection_iou[row])}"
            if outcome in ("classification", "both"):
                caption += f" is {names[gt.category[partner]]}"
        right.append(BoxMark(box, OUTCOME_COLORS[outcome], caption, bold=row in bold))
        seen.add(outcome)
    legend = [k for k in SHORT_LABELS if k in seen]
    what = "bold: the closest detection" if missed else "bold: the chosen errors"
    titles = ("ground truth", f"detections ({what})")
    return draw_side_by_side(pixels, left, right, titles, header, legend, side)


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of ``boxes [N, 4]``."""
    wh = np.clip(np.minimum(box[2:], boxes[:, 2:]) - np.maximum(box[:2], boxes[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def false_positive_maps(
    model: Any, image: np.ndarray, boxes: np.ndarray, names: Sequence[str], scores: Sequence[float]
) -> list[dict[str, Any] | None]:
    """The HiResCAM map (:func:`detkit.pictures.gradcam.detection_maps`) of given detections of one image.

    The model detects on ``image`` again; each given detection (``boxes`` ``[N, 4]`` xyxy in the
    image's pixels, class ``names``, ``scores``) takes the model's detection of that class whose box
    overlaps it most (IoU >= 0.7), ``None`` where there is none (another model, other thresholds).

    Returns:
        Per detection ``None`` or gradcam's detection dict (``box`` in letterboxed pixels, ``map``,
        ...) plus ``padded`` (the letterboxed image).
    """
    from detkit.pictures.gradcam import detection_maps

    if not len(boxes):
        return []
    padded, found = detection_maps(model, image, top=None, score_threshold=max(0.0, float(min(scores)) - 1e-3))
    _, scale = model.letterbox.resized_shape(*image.shape[:2])
    wanted = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.tile(scale, 2)
    out: list[dict[str, Any] | None] = []
    for box, name in zip(wanted, names):
        same = [d for d in found if d["name"] == name]
        ious = _iou(box, np.array([d["box"] for d in same], dtype=np.float64).reshape(-1, 4))
        best = int(np.argmax(ious)) if len(ious) else -1
        out.append({**same[best], "padded": padded} if best >= 0 and ious[best] >= 0.7 else None)
    return out


def save_cam_panels(items: Sequence[dict[str, Any]], path: str | Path, columns: int = 4) -> Path:
    """One panel per item (``padded`` image, ``map``, ``box`` in its pixels, ``title``): the map over the
    image with the box, as a PNG at ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    cols = max(1, min(columns, len(items)))
    rows = max(1, -(-len(items) // cols))
    fig = Figure(figsize=(3.3 * cols, 3.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, item in zip(axes.flat, items):
        ax.imshow(item["padded"])
        ax.imshow(item["map"], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        x1, y1, x2, y2 = item["box"]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1.5))
        ax.set_title(item["title"], fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out
