"""Tests for detkit.evaluation.voc: VOC's all-point AP and its matching rules."""

from __future__ import annotations

import numpy as np
import pytest

from detkit.evaluation.cocojson import load_ground_truth, load_results
from detkit.evaluation.voc import average_precision_all_points, voc_ap


def test_all_point_interpolation_by_hand():
    # envelope: precision 1 up to recall 0.5, then 2/3 up to recall 1 -> 0.5 * 1 + 0.5 * 2/3
    ap = average_precision_all_points(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3]))
    assert ap == pytest.approx(0.5 + 1 / 3)


def test_voc_rules_duplicates_difficult_and_classes_without_gt():
    gt = load_ground_truth(
        {
            "images": [{"id": 1}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100},
                {"id": 3, "image_id": 1, "category_id": 1, "bbox": [100, 100, 10, 10], "area": 100, "iscrowd": 1},
            ],
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        }
    )
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},  # TP
        {"image_id": 1, "category_id": 1, "bbox": [100, 100, 10, 10], "score": 0.85},  # difficult: ignored
        {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.8},  # duplicate: FP
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.7},  # TP
        {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "score": 0.7},  # class without GT
    ]
    mean, per_class = voc_ap(gt, load_results(dets, gt))
    # class a: TP, FP, TP -> recall .5, .5, 1; precision 1, .5, 2/3
    assert per_class[0] == pytest.approx(0.5 + 1 / 3)
    assert np.isnan(per_class[1]) and mean == pytest.approx(per_class[0])
