"""Tests for tide.assign_errors and detkit.evaluation.errors: a hand-made image with one detection of each outcome."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detkit.evaluation.cocojson import load_ground_truth, load_results
from detkit.evaluation.errors import box_geometry, costly_images, error_weights, most_confused, normalize_rows
from detkit.evaluation.tide import DETECTION_OUTCOMES, ERROR_TYPES, GROUND_TRUTH_OUTCOMES, assign_errors, evaluate_tide

DATA = Path(__file__).resolve().parent / "data"
A, B = 1, 2
GT = {
    "images": [{"id": 1, "height": 200, "width": 200}, {"id": 2, "height": 100, "width": 100}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": A, "bbox": [0, 0, 40, 40], "iscrowd": 0},  # found
        {"id": 2, "image_id": 1, "category_id": B, "bbox": [100, 100, 40, 40], "iscrowd": 0},  # found
        {"id": 3, "image_id": 1, "category_id": A, "bbox": [0, 150, 30, 30], "iscrowd": 0},  # missed
        {"id": 4, "image_id": 1, "category_id": B, "bbox": [150, 0, 40, 40], "iscrowd": 0},  # only a loose box
        {"id": 5, "image_id": 2, "category_id": A, "bbox": [10, 10, 40, 20], "iscrowd": 0},  # found
    ],
    "categories": [{"id": A, "name": "a"}, {"id": B, "name": "b"}],
}
DETS = [
    {"image_id": 1, "category_id": A, "bbox": [0, 0, 40, 40], "score": 0.9},  # 0 true positive
    {"image_id": 1, "category_id": A, "bbox": [1, 1, 40, 40], "score": 0.8},  # 1 duplicate
    {"image_id": 1, "category_id": A, "bbox": [100, 100, 40, 40], "score": 0.7},  # 2 classification (on b)
    {"image_id": 1, "category_id": B, "bbox": [160, 10, 40, 40], "score": 0.6},  # 3 localization (IoU 0.39)
    {"image_id": 1, "category_id": A, "bbox": [80, 60, 10, 10], "score": 0.5},  # 4 background
    {"image_id": 1, "category_id": B, "bbox": [100, 100, 40, 40], "score": 0.95},  # 5 true positive
    {"image_id": 1, "category_id": B, "bbox": [20, 0, 40, 40], "score": 0.4},  # 6 both (IoU 0.33 with an a)
    {"image_id": 2, "category_id": A, "bbox": [10, 10, 40, 20], "score": 0.3},  # 7 true positive
    {"image_id": 2, "category_id": A, "bbox": [60, 60, 10, 10], "score": 0.99},  # 8 background, outscoring every a
]
EXPECTED = ["true_positive", "duplicate", "classification", "localization", "background", "true_positive", "both",
            "true_positive", "background"]  # fmt: skip


@pytest.fixture
def case():
    gt = load_ground_truth(GT)
    return gt, load_results(DETS, gt)


def test_each_detection_and_ground_truth_gets_its_outcome(case):
    gt, dt = case
    a = assign_errors(gt, dt)
    assert [DETECTION_OUTCOMES[k] for k in a.detection] == EXPECTED
    assert [GROUND_TRUTH_OUTCOMES[k] for k in a.ground_truth] == ["found", "found", "missed", "found_with_error", "found"]
    assert a.detection_gt.tolist() == [0, 0, 1, 3, -1, 1, 0, 4, -1]
    np.testing.assert_allclose(a.detection_iou[[0, 3, 6]], [1.0, 900 / 2300, 800 / 2400])
    assert a.ground_truth_detection.tolist() == [0, 5, -1, 3, 7]
    assert a.ground_truth_iou[2] == 0.0 and a.ground_truth_iou[3] == pytest.approx(900 / 2300)
    counts = evaluate_tide(gt, dt).counts
    assert counts == {n: int(np.sum(a.detection == DETECTION_OUTCOMES.index(n))) for n in ERROR_TYPES[:5]} | {"missed": 1}


def test_detections_past_the_cap_are_not_evaluated(case):
    gt, dt = case
    a = assign_errors(gt, dt, max_dets=3)  # per image: image 1 keeps 0.95, 0.9, 0.8
    kept = [DETECTION_OUTCOMES[k] for k in a.detection]
    assert kept[:7] == ["true_positive", "duplicate"] + ["not_evaluated"] * 3 + ["true_positive", "not_evaluated"]
    assert a.detection_gt[2] == -1


def test_counts_match_tidecv_on_the_fixture_with_crowds():
    gt = load_ground_truth(DATA / "tide_fixture_gt.json")
    dt = load_results(DATA / "tide_fixture_dt.json", gt)
    a, counts = assign_errors(gt, dt), evaluate_tide(gt, dt).counts
    ignored = a.detection == DETECTION_OUTCOMES.index("ignored")
    assert ignored.any() and (a.ground_truth == GROUND_TRUTH_OUTCOMES.index("crowd")).any()
    for name in ERROR_TYPES[:5]:
        # an ignored detection is counted by its error type (as tidecv counts it): it cannot be more
        assert counts[name] - ignored.sum() <= int(np.sum(a.detection == DETECTION_OUTCOMES.index(name))) <= counts[name]
    assigned = sum(int(np.sum(a.detection == DETECTION_OUTCOMES.index(n))) for n in ERROR_TYPES[:5])
    assert sum(counts[n] for n in ERROR_TYPES[:5]) == assigned + ignored.sum()
    assert counts["missed"] == int(np.sum(a.ground_truth == GROUND_TRUTH_OUTCOMES.index("missed")))


def test_costly_images_rank_confident_errors_first(case):
    gt, dt = case
    a = assign_errors(gt, dt)
    rows, weight = error_weights(gt, dt, a, "background")
    assert rows.tolist() == [4, 8]
    # a's true positives score 0.9 and 0.3: the 0.5 error outscores one of two, the 0.99 error both
    np.testing.assert_allclose(weight, [0.5 + 1e-3 * 0.5, 1.0 + 1e-3 * 0.99])
    ranked = costly_images(gt, dt, a, "background")
    assert [gt.image_ids[c.image] for c in ranked] == [2, 1]
    [missed] = costly_images(gt, dt, a, "missed")
    assert missed.rows.tolist() == [2] and missed.cost == pytest.approx(1 / 3)  # one of class a's three objects
    assert costly_images(gt, dt, a, "classification", top=1)[0].rows.tolist() == [2]
    with pytest.raises(ValueError, match="error must be one of"):
        error_weights(gt, dt, a, "false_positive")


def test_box_geometry_size_aspect_and_border(case):
    gt, _ = case
    geometry = box_geometry(gt, {1: (200, 200), 2: (100, 100)})
    np.testing.assert_allclose(geometry["size"], [40, 40, 30, 40, np.sqrt(800)])
    np.testing.assert_allclose(geometry["aspect"], [1, 1, 1, 1, 2])
    np.testing.assert_allclose(geometry["border"], [0, 60 / 200, 0, 0, 10 / 100])  # x = 0, y = 0: touching
    assert np.isnan(box_geometry(gt, {1: (200, 200)})["border"][4])  # image 2's size unknown
    assert np.isnan(box_geometry(gt)["border"]).all()


def test_confusion_views():
    matrix = np.array([[5, 0, 0, 1], [0, 3, 4, 0], [0, 2, 6, 0], [3, 0, 0, 0]])
    np.testing.assert_allclose(normalize_rows(matrix)[1], [0, 3 / 7, 4 / 7, 0])
    assert normalize_rows(np.zeros((2, 2), dtype=int)).sum() == 0
    assert most_confused(matrix, 3).tolist() == [0, 1, 2, 3]
    # off-diagonal counts: class 0: 1 + 3 = 4, class 1: 4 + 2 = 6, class 2: 2 + 4 = 6
    assert most_confused(matrix, 2).tolist() == [1, 2, 3]
