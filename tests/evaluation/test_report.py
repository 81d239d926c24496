"""Tests for detkit.evaluation.report on a case with hand-known answers: class A perfect, class B always wrong."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from detkit.evaluation.cocoeval import evaluate_coco
from detkit.evaluation.cocojson import load_ground_truth, load_results
from detkit.evaluation.report import confusion_matrix, format_table, per_class_table, pr_curves, write_report

A, B = 10, 20  # COCO category ids of the two classes
GT = {
    "images": [{"id": 1}, {"id": 2}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": A, "bbox": [0, 0, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": B, "bbox": [100, 100, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": B, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": A, "bbox": [100, 100, 80, 80], "area": 6400, "iscrowd": 1},
    ],
    "categories": [{"id": A, "name": "good"}, {"id": B, "name": "bad"}],
}
DETS = [
    {"image_id": 1, "category_id": A, "bbox": [0, 0, 40, 40], "score": 0.9},  # A on A: right
    {"image_id": 1, "category_id": A, "bbox": [100, 100, 40, 40], "score": 0.8},  # B's object called A
    {"image_id": 1, "category_id": B, "bbox": [200, 0, 30, 30], "score": 0.7},  # B on background
    {"image_id": 2, "category_id": A, "bbox": [110, 110, 40, 40], "score": 0.95},  # inside A's crowd: ignored
    {"image_id": 2, "category_id": B, "bbox": [300, 300, 20, 20], "score": 0.1},  # below the confusion threshold
]


@pytest.fixture
def case():
    gt = load_ground_truth(GT)
    dt = load_results(DETS, gt)
    return gt, dt, evaluate_coco(gt, dt)


def test_per_class_table(case):
    _, _, result = case
    good, bad = per_class_table(result)
    assert (good["class"], good["category_id"], good["num_gt"], good["num_dt"]) == ("good", A, 1, 3)
    assert (bad["class"], bad["category_id"], bad["num_gt"], bad["num_dt"]) == ("bad", B, 2, 2)
    # COCO divides by tp + fp + eps, so "perfect" is 1 - 2e-16, exactly as pycocotools has it
    assert [good[k] for k in ("ap", "ap50", "ap75", "ar100")] == pytest.approx([1.0] * 4, abs=1e-12)
    assert bad["ap"] == bad["ap50"] == bad["ap75"] == bad["ar100"] == 0.0
    assert result.stats["map"] == pytest.approx(0.5) and result.stats["mar_100"] == pytest.approx(0.5)
    text = format_table(per_class_table(result))
    assert text.splitlines()[1].split() == ["good", "10", "1", "3", "1.000", "1.000", "1.000", "1.000"]


def test_pr_curves(case):
    _, _, result = case
    recall, per_class, overall = pr_curves(result, iou=0.5)
    assert recall.shape == (101,) and recall[0] == 0.0 and recall[-1] == 1.0
    np.testing.assert_allclose(per_class[0], np.ones(101), atol=1e-12)  # perfect: precision 1 at every recall
    np.testing.assert_array_equal(per_class[1], np.zeros(101))  # always wrong
    np.testing.assert_allclose(overall, np.full(101, 0.5), atol=1e-12)


def test_confusion_matrix_with_background(case):
    gt, dt, _ = case
    # rows: true good, bad, background; columns: predicted good, bad, background
    expected = [
        [1, 0, 0],  # the good object found as good
        [1, 0, 1],  # one bad object called good, the other missed
        [0, 1, 0],  # a bad detection on background (the 0.1 one is under the score threshold)
    ]
    np.testing.assert_array_equal(confusion_matrix(gt, dt), expected)
    with_low = confusion_matrix(gt, dt, score_threshold=0.0)
    assert with_low[2, 1] == 2 and with_low.sum() == 5  # crowd detection still left out


def test_write_report_files(case, tmp_path):
    gt, dt, result = case
    write_report(tmp_path, result.stats, result, confusion_matrix(gt, dt))
    for name in ("pr_overall.png", "pr_per_class.png", "confusion_matrix.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    rows = list(csv.DictReader((tmp_path / "per_class.csv").open()))
    assert [(r["class"], round(float(r["ap"]), 9)) for r in rows] == [("good", 1.0), ("bad", 0.0)]
    matrix = list(csv.reader((tmp_path / "confusion_matrix.csv").open()))
    assert matrix[0] == ["true \\ predicted", "good", "bad", "background"]
    assert matrix[2] == ["bad", "1", "0", "1"]
    curves = list(csv.reader((tmp_path / "pr_curves.csv").open()))
    all_50 = next(r for r in curves[1:] if r[0] == "0.5" and r[1] == "all")
    np.testing.assert_allclose([float(v) for v in all_50[2:]], [0.5] * 101, atol=1e-12)
    assert json.loads((tmp_path / "metrics.json").read_text())["map"] == pytest.approx(0.5)


def test_many_classes_stay_legible(tmp_path):
    from detkit.evaluation.report import plot_confusion, pr_subset

    names = [f"c{k}" for k in range(80)]
    per_class = np.tile(np.linspace(0, 1, 80)[:, None], (1, 101))
    per_class[3] = -1  # no ground truth: never drawn
    curves, title = pr_subset(names, per_class)
    assert len(curves) == 10 and "5 lowest and 5 highest AP50 of 79" in title
    assert [k.split()[0] for k in curves][:2] == ["c0", "c1"] and list(curves)[-1].startswith("c79")
    assert len(pr_subset(names[:4], per_class[:4])[0]) == 3
    matrix = np.eye(81, dtype=np.int64) * 5
    matrix[7, 80] = 9  # class 7 missed: among the most confused
    title = plot_confusion(tmp_path / "c.png", matrix, names, score_threshold=0.3, iou_threshold=0.6)
    assert title == "confusion at IoU >= 0.6, score >= 0.3 (20 of 80 classes: the most confused)"
    assert (tmp_path / "c.png").stat().st_size > 0
