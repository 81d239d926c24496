"""For report tests: a synthetic evaluation folder (ground truth, detections with every TIDE error, images) and a page reader."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from detkit.pictures.report_page import SECTIONS


def write_evaluation(folder: Path, num_classes: int, num_images: int = 12, seed: int = 0, images: bool = True) -> Path:
    """Write ``ground_truth.json`` and ``detections.json`` (as ``detkit evaluate --out`` does) and, with
    ``images``, ``images/<id>.png`` (each object a filled rectangle) under ``folder``; returns ``folder``.

    Each object is found (70 %), found with the wrong class, found with a loose box or missed; some
    images get a duplicate and a detection on background. Category ids are 1..K, the names long
    enough to test legibility.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    categories = [{"id": k + 1, "name": f"object class {k:02d}"} for k in range(num_classes)]
    gt_images, annotations, detections = [], [], []
    for image_id in range(1, num_images + 1):
        height, width = int(rng.integers(100, 160)), int(rng.integers(120, 200))
        gt_images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
        pixels = rng.integers(60, 120, (height, width, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            w, h = int(rng.integers(12, width // 2)), int(rng.integers(12, height // 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            cat = int(rng.integers(1, num_classes + 1))
            pixels[y : y + h, x : x + w] = rng.integers(0, 255, 3)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
            fate = rng.random()
            score = float(np.round(rng.uniform(0.3, 1.0), 3))
            box = [x + float(rng.integers(-2, 3)), y + float(rng.integers(-2, 3)), float(w), float(h)]
            if fate < 0.7:
                detections.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score})
                if rng.random() < 0.2:  # a duplicate of a found object
                    detections.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score * 0.9})
            elif fate < 0.8 and num_classes > 1:
                other = int(rng.choice([c for c in range(1, num_classes + 1) if c != cat]))
                detections.append({"image_id": image_id, "category_id": other, "bbox": box, "score": score})
            elif fate < 0.9:
                loose = [x + w * 0.6, y + h * 0.3, float(w), float(h)]  # IoU about 0.3: a localization error
                detections.append({"image_id": image_id, "category_id": cat, "bbox": loose, "score": score})
        if rng.random() < 0.5:  # a detection on background, in a corner
            detections.append({"image_id": image_id, "category_id": int(rng.integers(1, num_classes + 1)),
                               "bbox": [0.0, 0.0, 10.0, 10.0], "score": float(np.round(rng.uniform(0.3, 0.9), 3))})  # fmt: skip
        if images:
            (folder / "images").mkdir(exist_ok=True)
            Image.fromarray(pixels).save(folder / "images" / f"{image_id}.png")
    gt = {"images": gt_images, "annotations": annotations, "categories": categories}
    (folder / "ground_truth.json").write_text(json.dumps(gt))
    (folder / "detections.json").write_text(json.dumps(detections))
    return folder


class Page(HTMLParser):
    """Section ids, image sources and table rows of a report page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections, self.images, self.rows, self._table = [], [], {}, None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = attrs.get("id")
        elif tag == "tr" and self._table:
            self.rows[self._table] = self.rows.get(self._table, 0) + 1


def read_page(html: Path) -> Page:
    """The parsed page, checking that every section is there and every image exists or decodes."""
    page = Page(html.read_text())
    assert page.sections == list(SECTIONS)
    for src in page.images:
        if src.startswith("data:"):
            assert base64.b64decode(src.split(",", 1)[1], validate=True)[:4] == b"\x89PNG", src[:40]
        else:
            assert (html.parent / src).is_file(), src
    return page
