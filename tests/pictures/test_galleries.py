"""Tests for detkit.pictures.galleries: boxes in their outcome's colour, the chosen errors bold, missed objects dashed."""

from __future__ import annotations

import numpy as np

from detkit.evaluation.cocojson import load_ground_truth, load_results
from detkit.evaluation.tide import assign_errors
from detkit.pictures.galleries import OUTCOME_COLORS, compare_image

GT = {
    "images": [{"id": 7}],
    "annotations": [
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 40, 40]},  # found
        {"id": 2, "image_id": 7, "category_id": 1, "bbox": [60, 60, 30, 30]},  # missed
    ],
    "categories": [{"id": 1, "name": "a"}],
}
DETS = [
    {"image_id": 7, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},  # true positive
    {"image_id": 7, "category_id": 1, "bbox": [60, 5, 30, 30], "score": 0.8},  # background
    {"image_id": 7, "category_id": 1, "bbox": [5, 60, 20, 20], "score": 0.1},  # background, under the threshold
]
SIDE, GAP, TOP = 300, 12, 20  # panel side, gap between panels, title line (no header)


def _run(picture: np.ndarray, panel: int, x: int, y: int, color: tuple[int, int, int], top: int = TOP) -> int:
    """How many pixels of ``color`` lie at row ``y`` from column ``x - 2`` on (image pixels, scale 3)."""
    x0 = panel * (SIDE + GAP)
    row = picture[top + y * 3, x0 + x * 3 - 2 : x0 + x * 3 + 10]
    return int(np.all(row == color, axis=1).sum())


def test_outcome_colours_bold_errors_and_dashed_missed():
    gt = load_ground_truth(GT)
    dt = load_results(DETS, gt)
    assignment = assign_errors(gt, dt)
    pixels = np.zeros((100, 100, 3), dtype=np.uint8)
    picture = compare_image(gt, dt, assignment, 0, pixels, score_threshold=0.25, highlight=[1], side=SIDE)
    assert picture.dtype == np.uint8 and picture.shape[1] == 2 * SIDE + GAP and picture.shape[0] > TOP + SIDE
    green, orange, yellow = OUTCOME_COLORS["true_positive"], OUTCOME_COLORS["background"], OUTCOME_COLORS["missed"]
    assert _run(picture, 0, 10, 30, green) == 2  # the found object, left edge, thin
    assert _run(picture, 1, 10, 30, green) == 2  # its true positive on the right
    assert _run(picture, 1, 60, 20, orange) == 4  # the chosen background error: bold
    assert _run(picture, 1, 5, 70, orange) == 0  # the one under the threshold is not drawn
    left_edge = picture[TOP + 180 : TOP + 270, 180:182]  # the missed object's left edge, rows 60-90 at scale 3
    on = np.all(left_edge == yellow, axis=2).any(axis=1)
    assert 0.2 < on.mean() < 0.8, "a missed object's box is dashed"
    assert not np.all(picture[:, SIDE + GAP :] == yellow, axis=2).any(), "missed objects are drawn on the left only"


def test_missed_gallery_bolds_the_missed_object():
    gt = load_ground_truth(GT)
    dt = load_results(DETS, gt)
    assignment = assign_errors(gt, dt)
    pixels = np.zeros((100, 100, 3), dtype=np.uint8)
    picture = compare_image(gt, dt, assignment, 0, pixels, highlight=[1], side=SIDE, missed=True, header="image 7")
    yellow = OUTCOME_COLORS["missed"]
    assert _run(picture, 0, 60, 62, yellow, top=2 * TOP) == 4  # bold, in its first dash
    assert _run(picture, 1, 60, 20, OUTCOME_COLORS["background"], top=2 * TOP) == 0  # errors are not this gallery's
    grey = compare_image(gt, dt, assignment, 0, None, highlight=[1], side=SIDE, missed=True)
    assert np.all(grey[TOP + 5, 5] == 128), "without pixels the boxes are drawn on grey"
