"""Tests for detkit.models.heads.dense_decoder on hand-made scores and boxes, and the old FCOSDecoder name."""

import warnings
from collections.abc import Callable

import pytest
import torch

import detkit.models
from detkit.config import instantiate
from detkit.models import DenseDecoder, FCOSHead, FeatureInfo
from detkit.models.heads import make_points


def _inputs(scores, boxes):
    """``scores (1, P, K)`` and ``boxes (1, P, 4)`` from nested lists."""
    return torch.tensor(scores, dtype=torch.float32)[None], torch.tensor(boxes, dtype=torch.float32)[None]


def test_threshold_nms_and_sorting():
    post = DenseDecoder(score_threshold=0.3, nms_iou=0.5)
    scores, boxes = _inputs(
        [[0.9, 0.0], [0.8, 0.7], [0.2, 0.0], [0.0, 0.6]],
        [[0, 0, 10, 10], [1, 0, 11, 10], [40, 40, 50, 50], [20, 20, 30, 30]],
    )
    (det,) = post(scores, boxes, [4])
    # Position 1 class 0 overlaps position 0 class 0 (IoU 9/11) -> suppressed; its class 1 survives.
    # Position 2 (0.2) is below threshold.
    assert det["labels"].tolist() == [0, 1, 1]
    assert torch.equal(det["scores"], torch.tensor([0.9, 0.7, 0.6]))
    assert torch.equal(det["boxes"], torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]]))
    (low,) = post(scores, boxes, [4], score_threshold=0.1)
    assert low["labels"].tolist() == [0, 1, 1, 0]
    # Each detection records the position (and level) it was decoded from.
    assert det["point_index"].tolist() == [0, 1, 3] and det["level"].tolist() == [0, 0, 0]
    assert low["point_index"].tolist() == [0, 1, 3, 2]


def test_max_detections_topk_per_level_and_empty_boxes():
    scores, boxes = _inputs(
        [[0.9], [0.8], [0.7], [0.6]], [[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 64, 50], [0, 40, 10, 50]]
    )
    (det,) = DenseDecoder(max_detections=2)(scores, boxes, [2, 2])
    assert torch.equal(det["scores"], torch.tensor([0.9, 0.8]))
    (det,) = DenseDecoder()(scores, boxes, [2, 2])
    assert det["point_index"].tolist() == [0, 1, 2, 3] and det["level"].tolist() == [0, 0, 1, 1]
    # One candidate per level: the best of each level.
    (det,) = DenseDecoder(topk_per_level=1)(scores, boxes, [2, 2])
    assert torch.equal(det["scores"], torch.tensor([0.9, 0.7]))
    assert det["point_index"].tolist() == [0, 2] and det["level"].tolist() == [0, 1]
    # A box clipped to nothing (x1 == x2) is never a detection.
    boxes[0, 0] = torch.tensor([0.0, 0, 0, 10])
    (det,) = DenseDecoder()(scores, boxes, [2, 2])
    assert det["point_index"].tolist() == [1, 2, 3]


def test_batch_and_empty_output():
    scores = torch.zeros(2, 3, 2)
    scores[1, 0, 1] = 1.0
    boxes = torch.tensor([[0.0, 0, 8, 8], [8, 0, 16, 8], [0, 0, 16, 16]]).expand(2, 3, 4)
    dets = DenseDecoder()(scores, boxes, [2, 1])
    assert len(dets) == 2
    assert dets[0]["boxes"].shape == (0, 4) and dets[0]["labels"].dtype == torch.int64
    assert dets[0]["point_index"].shape == (0,) and dets[0]["level"].dtype == torch.int64
    assert dets[1]["labels"].tolist() == [1]
    assert dets[1]["point_index"].tolist() == [0] and dets[1]["level"].tolist() == [0]
    assert torch.equal(dets[1]["boxes"], torch.tensor([[0.0, 0, 8, 8]]))


@pytest.mark.parametrize(("threshold", "pre_nms_topk"), [(0.0, 20), (0.3, None)])
def test_padded_selects_what_forward_selects(threshold, pre_nms_topk):
    """The fixed-shape decoding of exports equals the ragged one: caps, truncation, NMS across images and classes."""
    torch.manual_seed(0)
    points, _ = make_points([(6, 6), (3, 3)], [8, 16])
    batch, num_points, num_classes = 3, points.shape[0], 4
    scores = torch.rand(batch, num_points, num_classes)
    ltrb = torch.rand(batch, num_points, 4) * 20  # many overlapping boxes in every image and class
    boxes = torch.cat((points - ltrb[..., :2], points + ltrb[..., 2:]), dim=-1).clamp(0, 48)
    decoder = DenseDecoder(
        score_threshold=threshold, topk_per_level=15, nms_iou=0.5, max_detections=7, pre_nms_topk=pre_nms_topk
    )
    ragged = decoder(scores, boxes, [36, 9])
    boxes, scores, labels, counts = decoder.padded(scores, boxes, [36, 9], image_size=(48, 48))
    assert boxes.shape == (batch, 7, 4) and counts.tolist() == [len(d["scores"]) for d in ragged]
    assert min(counts.tolist()) >= 1
    for b, det in enumerate(ragged):
        n = int(counts[b])
        assert torch.equal(scores[b, :n], det["scores"]) and torch.equal(labels[b, :n], det["labels"])
        assert torch.allclose(boxes[b, :n], det["boxes"], atol=1e-5)
        assert (labels[b, n:] == -1).all() and (scores[b, n:] == 0).all() and (boxes[b, n:] == 0).all()


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_detections"):
        DenseDecoder(max_detections=0)


def test_old_fcos_decoder_name_is_a_deprecated_alias_configs_still_load():
    """Configs and checkpoints written before the rename name ``FCOSDecoder``: they build a DenseDecoder."""
    with pytest.warns(DeprecationWarning, match="DenseDecoder"):
        from detkit.models import FCOSDecoder
    assert FCOSDecoder is DenseDecoder
    with pytest.warns(DeprecationWarning):
        from detkit.models.heads.fcos_decoder import FCOSDecoder as old_module_path
    assert old_module_path is DenseDecoder
    for class_path in ("detkit.models.FCOSDecoder", "detkit.models.heads.fcos_decoder.FCOSDecoder"):
        decoder = {"class_path": class_path, "init_args": {"nms_iou": 0.3}}
        config = {"class_path": "detkit.models.FCOSHead", "init_args": {"decoder": decoder}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            head = instantiate(Callable[[list[FeatureInfo], int], FCOSHead], config)([FeatureInfo(8, 8)], 2)
        assert type(head.decoder) is DenseDecoder and head.decoder.nms_iou == 0.3
    with pytest.raises(AttributeError, match="NoSuchDecoder"):
        getattr(detkit.models, "NoSuchDecoder")
