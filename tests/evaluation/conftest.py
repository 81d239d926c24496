"""Shared fixtures for the evaluation tests: randomised COCO ground truth / results with COCO's edge cases."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

# ../shared next to the repository root (absent on machines without the shared data: tests skip).
COCOAPI100 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cocoeval" / "cocoapi100"
COCOAPI100_GT = COCOAPI100 / "instances_val2014_100.json"
COCOAPI100_DT = COCOAPI100 / "instances_val2014_fakebbox100_results.json"


def _random_coco(seed: int, num_images: int = 30, num_categories: int = 5) -> tuple[dict, list]:
    """A ground-truth dict and results list full of edge cases.

    Integer boxes (exact IoU ties at thresholds, e.g. 0.5), duplicated ground-truth boxes, crowds,
    areas on the 32**2 / 96**2 boundaries, images without annotations or detections, a category
    without ground truth, coarse scores (ties), and >100 detections for some (image, category).
    """
    rng = np.random.default_rng(seed)
    images = [{"id": int(i), "height": 200, "width": 200} for i in rng.permutation(np.arange(1, 3 * num_images, 3))[:num_images]]
    categories = [{"id": int(c), "name": f"c{c}"} for c in (2, 5, 7, 11, 13)[:num_categories]]
    anns, dets = [], []
    for img in images:
        if rng.random() < 0.15:
            continue  # an image without ground truth
        for _ in range(int(rng.integers(0, 8))):
            cat = categories[int(rng.integers(0, num_categories - 1))]["id"]  # the last category has no GT
            x, y = (int(v) for v in rng.integers(0, 150, 2))
            w, h = (int(v) for v in rng.choice([4, 8, 16, 32, 40, 64, 96, 100], 2))
            area = float(rng.choice([w * h, 32.0**2, 96.0**2, w * h * 0.9]))
            crowd = int(rng.random() < 0.1)
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h], "area": area, "iscrowd": crowd})
            if rng.random() < 0.1:  # a duplicate box: equal IoUs against two ground truths
                anns.append({**anns[-1], "id": len(anns) + 1, "iscrowd": 0})
    by_image: dict[int, list] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    for img in images:
        if rng.random() < 0.1:
            continue  # an image without detections
        many = rng.random() < 0.05
        for _ in range(int(rng.integers(0, 130 if many else 15))):
            own = by_image.get(img["id"])
            if own and (many or rng.random() < 0.7):
                a = own[0] if many else own[int(rng.integers(0, len(own)))]
                x, y, w, h = a["bbox"]
                dx, dy, dw, dh = (int(v) for v in rng.integers(-4, 5, 4))
                box = [x + dx, y + dy, max(1, w + dw), max(1, h + dh)]
                cat = a["category_id"] if many or rng.random() < 0.8 else categories[int(rng.integers(0, num_categories))]["id"]
            else:
                box = [int(v) for v in rng.integers(0, 150, 2)] + [int(v) for v in rng.integers(2, 100, 2)]
                cat = categories[int(rng.integers(0, num_categories))]["id"]
            dets.append({"image_id": img["id"], "category_id": cat, "bbox": [float(v) for v in box], "score": float(rng.integers(1, 20)) / 20})
    return {"images": images, "annotations": anns, "categories": categories}, dets


def _pycocotools_eval(gt: dict, dets: list):
    """pycocotools' COCOeval on in-memory dicts -> the evaluated ``COCOeval`` object (quiet)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {k: list(v) for k, v in gt.items()}
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(d) for d in dets])
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


@pytest.fixture
def random_coco():
    """:func:`_random_coco`: ``random_coco(seed, num_images=30) -> (gt dict, results list)``."""
    return _random_coco


@pytest.fixture
def pycocotools_eval():
    """:func:`_pycocotools_eval`: ``pycocotools_eval(gt, dets) -> evaluated COCOeval``."""
    return _pycocotools_eval


@pytest.fixture
def cocoapi100() -> tuple[Path, Path, list[float]]:
    """``(gt json, bbox results json, the 12 expected bbox stats from its SOURCE file)``, or skip."""
    if not COCOAPI100_GT.is_file():
        pytest.skip("../shared/data/cocoeval/cocoapi100 not present")
    source = next(COCOAPI100.glob("SOURCE_*")).read_text()
    block = source[source.index('"bbox": [') : source.index("]", source.index('"bbox": ['))]
    expected = [float(x) for x in re.findall(r"\d+\.\d+", block)]
    assert len(expected) == 12
    return COCOAPI100_GT, COCOAPI100_DT, expected
