"""Pictures of detections: boxes in a colour per class, with readable captions (class name and score)."""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

__all__ = ["PALETTE", "class_color", "draw_detections"]

# tab10: a class keeps its colour across images and runs; classes past 10 get evenly spread hues.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def class_color(label: int) -> tuple[int, int, int]:
    """The RGB colour of class ``label``: the same in every image and every run."""
    if label < len(PALETTE):
        code = PALETTE[label].lstrip("#")
        return tuple(int(code[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
    hue = (label * 0.618033988749895) % 1.0  # golden-ratio steps: neighbouring labels differ
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black on light fills, white on dark ones (relative luminance)."""
    luminance = 0.2126 * fill[0] + 0.7152 * fill[1] + 0.0722 * fill[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def draw_detections(
    image: np.ndarray,
    boxes: Tensor,
    labels: Tensor,
    class_names: Sequence[str],
    scores: Tensor | None = None,
    width: int | None = None,
    font_size: int | None = None,
) -> np.ndarray:
    """Draw boxes with captions on an image.

    Each box is outlined in its class's colour (:func:`class_color`); its caption (class name, and
    the score when given) is written on a filled label of that colour, in black or white, whichever
    reads better on it. Captions are drawn after all boxes (no line crosses one), the most confident
    last, so it is on top where captions overlap. The label sits above the box, or inside its top edge when there is no room
    above, and is moved left to stay inside the image: no caption is clipped at the border.

    Args:
        image: ``HxWx3`` uint8 RGB.
        boxes: ``FloatTensor[D, 4]`` xyxy in the image's pixels.
        labels: ``Int64Tensor[D]`` class indices into ``class_names``.
        class_names: one name per class.
        scores: optional ``FloatTensor[D]``, appended to each caption.
        width: line width in pixels; default: scales with the image (2 px at 640 px).
        font_size: caption height in pixels; default: scales with the image (16 px at 640 px, at least 10).

    Returns:
        A new ``HxWx3`` uint8 RGB array.
    """
    height, image_width = image.shape[:2]
    side = max(height, image_width)
    width = width or max(1, round(side / 320))
    font_size = font_size or max(10, round(side / 40))
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    names = [class_names[i] for i in labels.tolist()]
    captions = [f"{n} {s:.2f}" for n, s in zip(names, scores.tolist())] if scores is not None else names
    boxes_list = boxes.detach().cpu().float().tolist()
    colors = [class_color(label) for label in labels.tolist()]
    for box, color in zip(boxes_list, colors):
        draw.rectangle(box, outline=color, width=width)
    # Captions after every box (no box line crosses a caption), the most confident drawn last (on top).
    order = sorted(range(len(captions)), key=lambda k: float(scores[k]) if scores is not None else 0.0)
    for k in order:
        x1, y1 = boxes_list[k][:2]
        left, top, right, bottom = draw.textbbox((0, 0), captions[k], font=font)
        pad = max(1, font_size // 8)
        label_w, label_h = right - left + 2 * pad, bottom - top + 2 * pad
        lx = min(max(0.0, x1), max(0.0, image_width - label_w))
        ly = y1 - label_h if y1 - label_h >= 0 else max(0.0, min(y1, height - label_h))
        draw.rectangle((lx, ly, lx + label_w, ly + label_h), fill=colors[k])
        draw.text((lx + pad - left, ly + pad - top), captions[k], fill=_text_color(colors[k]), font=font)
    return np.asarray(canvas).copy()
