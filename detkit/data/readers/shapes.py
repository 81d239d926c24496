"""The built-in Shapes reader: procedurally drawn circles, squares and triangles, no download."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from detkit.data.readers.base import Reader

__all__ = ["SHAPES_CLASS_NAMES", "ShapesReader"]

#: Class names of :class:`ShapesReader`, in label order.
SHAPES_CLASS_NAMES = ("circle", "square", "triangle")

_MAX_IOU = 0.3  # a new shape's box may overlap each earlier box up to this IoU
_PLACEMENT_TRIES = 20
_COLOUR_TRIES = 24
_MIN_CONTRAST = 110.0  # Euclidean RGB distance between a shape and what lies under it


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[4]`` xyxy box against ``[N, 4]`` boxes -> ``[N]``."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[:, 0] * wh[:, 1]
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A solid colour, linear gradient or blocky noise texture -> ``[H, W, 3]`` uint8."""
    kind = rng.integers(3)
    base = rng.integers(0, 256, size=3).astype(np.float32)
    if kind == 0:
        return np.broadcast_to(base.astype(np.uint8), (height, width, 3)).copy()
    if kind == 1:
        other = rng.integers(0, 256, size=3).astype(np.float32)
        angle = rng.uniform(0, 2 * math.pi)
        ys = np.arange(height, dtype=np.float32)[:, None]
        xs = np.arange(width, dtype=np.float32)[None, :]
        t = xs * math.cos(angle) + ys * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)  # [H, W] in [0, 1]
        return (base + t[:, :, None] * (other - base)).astype(np.uint8)
    cell = int(rng.integers(4, 13))
    coarse = rng.normal(0.0, 28.0, size=(height // cell + 1, width // cell + 1, 3)).astype(np.float32)
    texture = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:height, :width]
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Draw shape ``label`` on a ``size x size`` canvas and crop it to its tight box -> bool mask."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if label == 0:  # circle
        draw.ellipse((0, 0, size - 1, size - 1), fill=255)
    elif label == 1:  # axis-aligned square
        draw.rectangle((0, 0, size - 1, size - 1), fill=255)
    else:  # equilateral triangle inscribed in the canvas circle, random rotation
        r = (size - 1) / 2.0
        start = rng.uniform(0, 2 * math.pi)
        angles = [start + k * 2 * math.pi / 3 for k in range(3)]
        points = [(r + r * math.cos(a), r + r * math.sin(a)) for a in angles]
        draw.polygon(points, fill=255)
    mask = np.asarray(canvas) > 0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _pick_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A random RGB colour far (>= ``_MIN_CONTRAST``) from every colour in ``avoid``, else the farthest tried."""
    best, best_distance = None, -1.0
    for _ in range(_COLOUR_TRIES):
        colour = rng.integers(0, 256, size=3).astype(np.float32)
        distance = min(float(np.linalg.norm(colour - other)) for other in avoid)
        if distance >= _MIN_CONTRAST:
            return colour.astype(np.uint8)
        if distance > best_distance:
            best, best_distance = colour, distance
    return best.astype(np.uint8)


class ShapesReader(Reader):
    """Procedurally generated images of circles, squares and triangles on varied backgrounds.

    Every item is drawn on the fly from ``np.random.default_rng([seed, index])``, so it is
    deterministic, needs no files and different seeds give disjoint datasets. Image sides vary
    independently in ``[min_image_size, max_image_size]`` (non-square, to exercise letterboxing);
    each shape is 15 %-50 % of the short side, fully inside the image, coloured to contrast with
    what lies beneath it, and overlaps each earlier shape's box with IoU <= 0.3 (later shapes are
    drawn on top). Boxes are the tight pixel extent of each drawn shape.

    Items are ``(image uint8 [H, W, 3] RGB, target)`` with numpy ``boxes`` float32 ``[N, 4]`` xyxy,
    ``labels`` int64 ``[N]``, ``iscrowd`` int64 ``[N]`` (zeros), ``area`` float32 ``[N]``, ``image_id``
    (the index) and ``file_name``.
    """

    CLASS_NAMES = SHAPES_CLASS_NAMES

    def __init__(
        self,
        num_images: int,
        seed: int = 0,
        min_image_size: int = 96,
        max_image_size: int = 160,
        max_shapes: int = 4,
    ) -> None:
        """Create the reader (nothing is generated until items are read).

        Args:
            num_images: Number of images in the dataset.
            seed: Non-negative seed; image ``i`` is drawn from ``default_rng([seed, i])``.
            min_image_size: Smallest image side in pixels.
            max_image_size: Largest image side in pixels.
            max_shapes: Most shapes per image (each image has at least one).
        """
        if num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not 16 <= min_image_size <= max_image_size:
            raise ValueError(
                f"need 16 <= min_image_size <= max_image_size, got min_image_size={min_image_size}, "
                f"max_image_size={max_image_size}"
            )
        if max_shapes < 1:
            raise ValueError(f"max_shapes must be >= 1, got {max_shapes}")
        self.num_images = num_images
        self.seed = seed
        self.min_image_size = min_image_size
        self.max_image_size = max_image_size
        self.max_shapes = max_shapes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_images={self.num_images}, seed={self.seed})"

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        return list(self.CLASS_NAMES)

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for ShapesReader of {self.num_images} images")
        index = index % self.num_images
        rng = np.random.default_rng([self.seed, index])
        height, width = (int(v) for v in rng.integers(self.min_image_size, self.max_image_size + 1, size=2))
        image = _background(rng, height, width)
        short = min(height, width)
        boxes: list[np.ndarray] = []
        labels: list[int] = []
        colours: list[np.ndarray] = []
        for _ in range(int(rng.integers(1, self.max_shapes + 1))):
            label = int(rng.integers(len(self.CLASS_NAMES)))
            size = int(rng.integers(math.ceil(0.15 * short), int(0.5 * short) + 1))
            mask = _shape_mask(rng, label, size)  # [h, w] bool, tight
            mh, mw = mask.shape
            for _ in range(_PLACEMENT_TRIES):
                x0, y0 = int(rng.integers(0, width - mw + 1)), int(rng.integers(0, height - mh + 1))
                box = np.array([x0, y0, x0 + mw, y0 + mh], dtype=np.float32)
                overlaps = _iou(box, np.stack(boxes)) if boxes else np.zeros(0)
                if not (overlaps > _MAX_IOU).any():
                    break
            else:
                continue  # no placement with limited occlusion: skip this shape
            region = image[y0 : y0 + mh, x0 : x0 + mw]
            avoid = [region[mask].reshape(-1, 3).mean(axis=0)]
            avoid += [c.astype(np.float32) for c, o in zip(colours, overlaps) if o > 0]
            colour = _pick_colour(rng, avoid)
            region[mask] = colour
            boxes.append(box)
            labels.append(label)
            colours.append(colour)
        boxes_array = np.stack(boxes).astype(np.float32)  # [N, 4]
        widths, heights = boxes_array[:, 2] - boxes_array[:, 0], boxes_array[:, 3] - boxes_array[:, 1]
        target = {
            "boxes": boxes_array,
            "labels": np.asarray(labels, dtype=np.int64),
            "image_id": index,
            "file_name": f"shapes_{self.seed}_{index:06d}.png",
            "iscrowd": np.zeros(len(labels), dtype=np.int64),
            "area": (widths * heights).astype(np.float32),
        }
        return image, target
