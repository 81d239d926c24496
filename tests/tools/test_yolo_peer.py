"""Tests for tools/yolo_peer.py's per-image prediction loop (no Ultralytics needed: a stand-in predictor)."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tools.yolo_peer import predict_each


def _result(boxes: list[list[float]], scores: list[float], classes: list[int]) -> SimpleNamespace:
    return SimpleNamespace(boxes=SimpleNamespace(
        xyxy=torch.tensor(boxes).reshape(-1, 4), conf=torch.tensor(scores), cls=torch.tensor(classes, dtype=torch.float32)
    ))  # fmt: skip


def test_an_image_ultralytics_cannot_read_has_no_detections_and_is_named():
    images = [Path("a.jpg"), Path("cut.jpg"), Path("c.png")]
    answers = {
        "a.jpg": [_result([[1, 2, 3, 4]], [0.9], [2])],
        "cut.jpg": [],  # "Image Read Error": no result at all
        "c.png": [_result([], [], [])],
    }
    records, unreadable = predict_each(images, lambda path: answers[path])
    assert unreadable == ["cut.jpg"]
    assert [r["stem"] for r in records] == ["a", "cut", "c"]
    assert records[0] == {"stem": "a", "boxes": [[1.0, 2.0, 3.0, 4.0]], "scores": [pytest.approx(0.9)], "classes": [2]}
    assert records[1] == {"stem": "cut", "boxes": [], "scores": [], "classes": []}
    assert records[2]["boxes"] == []


def test_more_than_one_result_for_one_image_is_an_error():
    with pytest.raises(RuntimeError, match="2 results"):
        predict_each([Path("a.jpg")], lambda path: [_result([], [], []), _result([], [], [])])
