"""Tests for detkit.models.heads.fcos."""

import math
from functools import partial

import pytest
import torch

from detkit.models import DenseDecoder, FCOSAssigner, FCOSHead, FCOSLoss, FeatureInfo, make_points


def _levels(channels, strides):
    return [FeatureInfo(channels, s) for s in strides]


def test_output_shapes_and_init():
    head = FCOSHead(_levels(16, [8, 16]), 5, num_convs=2)
    feats = [torch.randn(2, 16, 4, 6), torch.randn(2, 16, 2, 3)]
    out = head(feats)
    cls, ltrb, quality = out["cls_logits"], out["ltrb"], out["quality_logits"]
    assert cls.shape == (2, 30, 5) and ltrb.shape == (2, 30, 4) and quality.shape == (2, 30)
    assert (ltrb >= 0).all()
    points, strides = make_points([(4, 6), (2, 3)], [8, 16])
    assert torch.equal(out["points"], points) and torch.equal(out["point_strides"], strides)
    assert torch.allclose(head.cls_logits.bias, torch.full((5,), -math.log(99.0)))
    assert head.scales.shape == (2,)
    assert head.strides == [8, 16] and head.num_classes == 5


def test_reshape_order_and_pixel_scaling():
    """Logits follow the make_points order, and ltrb = relu(scale * raw) * stride."""
    head = FCOSHead(_levels(2, [8, 16]), 1, num_convs=0, kernel_size=1)
    with torch.no_grad():
        for conv in (head.cls_logits, head.box_reg, head.quality_logits):
            conv.weight.zero_()
            conv.bias.zero_()
        head.cls_logits.weight[0, 0] = 1.0  # logit = channel 0
        head.box_reg.weight[:, 1] = 1.0  # every distance = channel 1
        head.scales.copy_(torch.tensor([1.0, 2.0]))
    sizes = [(3, 4), (2, 2)]
    feats = []
    for h, w in sizes:
        code = (torch.arange(h)[:, None] * 10 + torch.arange(w)[None, :]).float()  # row*10 + col
        feats.append(torch.stack((code, torch.ones(h, w)))[None])
    out = head(feats)
    cls, ltrb = out["cls_logits"], out["ltrb"]
    points, strides = make_points(sizes, [8, 16])
    rows, cols = points[:, 1] / strides - 0.5, points[:, 0] / strides - 0.5
    assert torch.equal(cls[0, :, 0], rows * 10 + cols)
    expected = (strides * torch.where(strides == 8, 1.0, 2.0))[:, None].expand(-1, 4)
    assert torch.equal(ltrb[0], expected)


def test_default_parts_and_injected_parts():
    head = FCOSHead(_levels(8, [8, 16]), 2)
    assert isinstance(head.assigner, FCOSAssigner) and head.assigner.center_sampling_radius == 1.5
    assert isinstance(head.criterion, FCOSLoss) and head.criterion.quality == "centerness"
    assert isinstance(head.decoder, DenseDecoder) and head.decoder.score_threshold == 0.05
    # Parts are not shared between heads built with defaults.
    assert FCOSHead(_levels(8, [8]), 2).assigner is not head.assigner
    assigner, loss, decoder = FCOSAssigner(0.0), FCOSLoss(quality="iou"), DenseDecoder(max_detections=3)
    head = FCOSHead(_levels(8, [8, 16]), 2, assigner=assigner, loss=loss, decoder=decoder)
    assert head.assigner is assigner and head.criterion is loss and head.decoder is decoder
    # The parts have no parameters or buffers: the state dict is the layers' only.
    assert not [k for k in head.state_dict() if k.startswith(("assigner", "criterion", "decoder"))]


def test_loss_equals_assigner_then_loss():
    torch.manual_seed(0)
    head = FCOSHead(_levels(8, [8, 16]), 3, num_convs=1, assigner=FCOSAssigner(center_sampling_radius=0))
    out = head([torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)])
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 30.0, 30.0]]), "labels": torch.tensor([2, 0]),
         "iscrowd": torch.tensor([0, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    losses = head.loss(out, targets)
    boxes = torch.tensor([[[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 30.0, 30.0]], [[0.0, 0, 0, 0], [0, 0, 0, 0]]])
    labels = torch.tensor([[2, 0], [-1, -1]])
    valid = torch.tensor([[True, False], [False, False]])  # crowd and padding never make positives
    assigned = head.assigner(out["points"], out["point_strides"], boxes, labels, valid)
    expected = head.criterion(out["cls_logits"], out["ltrb"], out["quality_logits"], out["points"], assigned)
    assert (assigned.labels[0] == 2).sum() == 4 and (assigned.labels[1] == -1).all()
    for key, value in expected.items():
        assert torch.equal(losses[key], value), key
    with pytest.raises(ValueError, match="targets"):
        head.loss(out, targets[:1])


def test_predict_records_point_and_level():
    head = FCOSHead(_levels(4, [8, 16]), 2, num_convs=0, decoder=DenseDecoder(score_threshold=0.0, max_detections=1000))
    out = head([torch.randn(1, 4, 4, 4), torch.randn(1, 4, 2, 2)])
    (det,) = head.predict(out, image_size=(32, 32))
    assert det["point_index"].dtype == torch.int64 and det["level"].dtype == torch.int64
    assert det["level"].tolist() == (det["point_index"] >= 16).long().tolist()
    # Each detection is the decoded box and score of its point.
    p = det["point_index"]
    boxes = torch.cat((out["points"][p] - out["ltrb"][0, p, :2], out["points"][p] + out["ltrb"][0, p, 2:]), dim=1)
    assert torch.allclose(det["boxes"], boxes.clamp(0, 32))
    scores = torch.sqrt(out["cls_logits"][0, p, det["labels"]].sigmoid() * out["quality_logits"][0, p].sigmoid())
    assert torch.allclose(det["scores"], scores)


def test_validation():
    with pytest.raises(ValueError, match="same channels"):
        FCOSHead([FeatureInfo(8, 8), FeatureInfo(16, 16)], 2)
    with pytest.raises(ValueError, match="num_classes"):
        FCOSHead(_levels(8, [8]), 0)
    with pytest.raises(ValueError, match="prior_prob"):
        FCOSHead(_levels(8, [8]), 2, prior_prob=1.0)
    with pytest.raises(ValueError, match="2 levels"):
        FCOSHead(_levels(8, [8, 16]), 2)([torch.randn(1, 8, 4, 4)])
    assert partial(FCOSHead, num_convs=1)(_levels(8, [8]), 2).num_classes == 2
