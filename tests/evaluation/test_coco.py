"""Tests for detkit.evaluation.coco: COCO stats against pycocotools' published numbers."""

import re
from pathlib import Path

import pytest
import torch

from detkit.evaluation import COCO_STAT_NAMES, DetectionEvaluator, coco_json_to_tensors

COCOAPI100 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cocoeval" / "cocoapi100"


def _expected_bbox_stats() -> list[float]:
    source = next(COCOAPI100.glob("SOURCE_*")).read_text()
    block = source[source.index('"bbox": [') : source.index("]", source.index('"bbox": ['))]
    return [float(x) for x in re.findall(r"\d+\.\d+", block)]


@pytest.mark.skipif(not COCOAPI100.exists(), reason="../shared/data/cocoeval/cocoapi100 not present")
def test_cocoapi100_matches_pycocotools_stats():
    detections, targets = coco_json_to_tensors(
        COCOAPI100 / "instances_val2014_100.json", COCOAPI100 / "instances_val2014_fakebbox100_results.json"
    )
    evaluator = DetectionEvaluator()
    # Feed in uneven batches, as a validation loop would.
    for start in range(0, len(targets), 7):
        evaluator.update(detections[start : start + 7], targets[start : start + 7])
    stats = evaluator.compute()
    expected = _expected_bbox_stats()
    assert len(expected) == 12
    for name, want in zip(COCO_STAT_NAMES, expected):
        assert stats[name] == pytest.approx(want, abs=1e-4), name


def _box(x1, y1, x2, y2):
    return torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)


def test_perfect_and_wrong_detections():
    evaluator = DetectionEvaluator()
    target = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([1])}
    evaluator.update([{"boxes": _box(10, 10, 50, 50), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], [target])
    assert evaluator.compute()["map"] == pytest.approx(1.0)
    evaluator.reset()
    evaluator.update([{"boxes": _box(60, 60, 90, 90), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], [target])
    assert evaluator.compute()["map"] == pytest.approx(0.0)


def test_crowd_ground_truth_is_ignored():
    evaluator = DetectionEvaluator()
    target = {
        "boxes": torch.tensor([[10, 10, 50, 50], [100, 100, 200, 200]], dtype=torch.float32),
        "labels": torch.tensor([1, 1]),
        "iscrowd": torch.tensor([0, 1]),
    }
    # A detection on the crowd region is neither a false positive nor a missed crowd box.
    dets = {
        "boxes": torch.tensor([[10, 10, 50, 50], [100, 100, 200, 200]], dtype=torch.float32),
        "scores": torch.tensor([0.5, 0.9]),
        "labels": torch.tensor([1, 1]),
    }
    evaluator.update([dets], [target])
    assert evaluator.compute()["map"] == pytest.approx(1.0)
