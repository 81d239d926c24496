"""Tests for detkit.models.heads.fcos_decoder on hand-made logits."""

import math

import pytest
import torch

from detkit.models import FCOSDecoder
from detkit.models.heads import make_points


def _logit(p):
    return math.log(p / (1 - p))


def _inputs(cls_probs, boxes, points, strides):
    """Build logits whose sqrt(sigmoid(cls) * sigmoid(q)) equals ``cls_probs`` (quality prob 1 - 1e-6)."""
    cls = torch.tensor(cls_probs).clamp(1e-6, 1 - 1e-6)
    q = 1 - 1e-6
    cls_logits = torch.log((cls**2 / q) / (1 - cls**2 / q))[None]
    quality = torch.full((1, cls.shape[0]), _logit(q))
    pts = torch.tensor(points)
    bx = torch.tensor(boxes)
    ltrb = torch.cat((pts - bx[:, :2], bx[:, 2:] - pts), dim=1)[None]
    return cls_logits, ltrb, quality, pts, torch.tensor(strides)


def test_threshold_nms_and_sorting():
    post = FCOSDecoder(score_threshold=0.3, nms_iou=0.5)
    inputs = _inputs(
        [[0.9, 0.0], [0.8, 0.7], [0.2, 0.0], [0.0, 0.6]],
        [[0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 50, 50], [20, 20, 30, 30]],
        [[5.0, 5.0], [6.0, 5.0], [45.0, 45.0], [25.0, 25.0]],
        [8.0, 8.0, 8.0, 8.0],
    )
    (det,) = post(*inputs, image_size=(64, 64))
    # Point 1 class 0 overlaps point 0 class 0 (IoU 9/11) -> suppressed; its class 1 survives.
    # Point 2 (0.2) is below threshold.
    assert det["labels"].tolist() == [0, 1, 1]
    assert torch.allclose(det["scores"], torch.tensor([0.9, 0.7, 0.6]), atol=1e-4)
    assert torch.allclose(det["boxes"], torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]]), atol=1e-4)
    (low,) = post(*inputs, image_size=(64, 64), score_threshold=0.1)
    assert low["labels"].tolist() == [0, 1, 1, 0]
    # Each detection records the point (and level) it was decoded from.
    assert det["point_index"].tolist() == [0, 1, 3] and det["level"].tolist() == [0, 0, 0]
    assert low["point_index"].tolist() == [0, 1, 3, 2]


def test_max_detections_topk_and_clipping():
    probs = [[0.9], [0.8], [0.7], [0.6]]
    boxes = [[-5, -5, 10, 10], [20, 20, 30, 30], [40, 40, 70, 50], [0, 40, 10, 50]]
    points = [[5.0, 5.0], [25.0, 25.0], [45.0, 45.0], [5.0, 45.0]]
    inputs = _inputs(probs, boxes, points, [8.0, 8.0, 16.0, 16.0])
    (det,) = FCOSDecoder(max_detections=2)(*inputs, image_size=(60, 64))
    assert torch.allclose(det["scores"], torch.tensor([0.9, 0.8]), atol=1e-4)
    assert torch.allclose(det["boxes"][0], torch.tensor([0.0, 0, 10, 10]), atol=1e-4)
    (det,) = FCOSDecoder()(*inputs, image_size=(60, 64))
    assert torch.allclose(det["boxes"][2], torch.tensor([40.0, 40, 64, 50]), atol=1e-4)
    assert det["point_index"].tolist() == [0, 1, 2, 3] and det["level"].tolist() == [0, 0, 1, 1]
    # One candidate per level: the best of each stride.
    (det,) = FCOSDecoder(topk_per_level=1)(*inputs, image_size=(60, 64))
    assert torch.allclose(det["scores"], torch.tensor([0.9, 0.7]), atol=1e-4)
    assert det["point_index"].tolist() == [0, 2] and det["level"].tolist() == [0, 1]


def test_batch_and_empty_output():
    cls = torch.full((2, 3, 2), -20.0)
    cls[1, 0, 1] = 20.0
    ltrb = torch.full((2, 3, 4), 4.0)
    quality = torch.full((2, 3), 20.0)
    points = torch.tensor([[4.0, 4.0], [12.0, 4.0], [8.0, 8.0]])
    strides = torch.tensor([8.0, 8.0, 16.0])
    dets = FCOSDecoder()(cls, ltrb, quality, points, strides, image_size=(16, 16))
    assert len(dets) == 2
    assert dets[0]["boxes"].shape == (0, 4) and dets[0]["labels"].dtype == torch.int64
    assert dets[0]["point_index"].shape == (0,) and dets[0]["level"].dtype == torch.int64
    assert dets[1]["labels"].tolist() == [1]
    assert dets[1]["point_index"].tolist() == [0] and dets[1]["level"].tolist() == [0]
    assert torch.allclose(dets[1]["boxes"], torch.tensor([[0.0, 0, 8, 8]]))


@pytest.mark.parametrize("quality", [True, False])
@pytest.mark.parametrize(("threshold", "pre_nms_topk"), [(0.0, 20), (0.3, None)])
def test_padded_selects_what_forward_selects(quality, threshold, pre_nms_topk):
    """The fixed-shape decoding of exports equals the ragged one: caps, truncation, NMS across images and classes."""
    torch.manual_seed(0)
    sizes, strides = [(6, 6), (3, 3)], [8, 16]
    points, point_strides = make_points(sizes, strides)
    batch, num_points, num_classes = 3, points.shape[0], 4
    cls = torch.randn(batch, num_points, num_classes) * 2
    ltrb = torch.rand(batch, num_points, 4) * 20  # many overlapping boxes in every image and class
    quality_logits = torch.randn(batch, num_points) if quality else None
    decoder = FCOSDecoder(score_threshold=threshold, topk_per_level=15, nms_iou=0.5, max_detections=7, pre_nms_topk=pre_nms_topk)
    ragged = decoder(cls, ltrb, quality_logits, points, point_strides, image_size=(48, 48))
    boxes, scores, labels, counts = decoder.padded(cls, ltrb, quality_logits, points, [36, 9], image_size=(48, 48))
    assert boxes.shape == (batch, 7, 4) and counts.tolist() == [len(d["scores"]) for d in ragged]
    assert min(counts.tolist()) >= 1
    for b, det in enumerate(ragged):
        n = int(counts[b])
        assert torch.equal(scores[b, :n], det["scores"]) and torch.equal(labels[b, :n], det["labels"])
        assert torch.allclose(boxes[b, :n], det["boxes"], atol=1e-5)
        assert (labels[b, n:] == -1).all() and (scores[b, n:] == 0).all() and (boxes[b, n:] == 0).all()
