"""Tests for detkit.models.heads.base: the point grid, target batching, the DenseHead contract and its shared parts."""

import math

import pytest
import torch
from torch import nn

from detkit.models import (
    ComposedDenseHead,
    DenseDecoder,
    DenseHead,
    FCOSAssigner,
    FeatureInfo,
    batch_targets,
    make_points,
)
from detkit.models.heads import init_dense_convs


def test_make_points_hand_computed():
    points, strides = make_points([(2, 3), (1, 1)], [8, 16], device="cpu", dtype=torch.float32)
    expected = torch.tensor(
        [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8]], dtype=torch.float32
    )
    assert torch.equal(points, expected)
    assert torch.equal(strides, torch.tensor([8, 8, 8, 8, 8, 8, 16], dtype=torch.float32))


def test_batch_targets_pads_and_masks_crowd():
    targets = [
        {"boxes": torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]]), "labels": torch.tensor([1, 2]),
         "iscrowd": torch.tensor([0, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
        {"boxes": torch.tensor([[0, 0, 9, 9]], dtype=torch.float64), "labels": torch.tensor([0], dtype=torch.int32)},
    ]
    boxes, labels, valid = batch_targets(targets, torch.device("cpu"))
    assert boxes.shape == (3, 2, 4) and boxes.dtype == torch.float32
    assert labels.tolist() == [[1, 2], [-1, -1], [0, -1]] and labels.dtype == torch.int64
    assert valid.tolist() == [[True, False], [False, False], [True, False]]
    assert torch.equal(boxes[2, 0], torch.tensor([0.0, 0, 9, 9])) and (boxes[1] == 0).all()


def test_dense_head_is_abstract_and_checks_inputs():
    with pytest.raises(TypeError, match="abstract"):
        DenseHead([FeatureInfo(8, 8)], 2)

    class Head(DenseHead):
        forward = loss = predict = lambda *args, **kwargs: None

    head = Head([(8, 8), (8, 16)], 2)
    assert head.in_features == [FeatureInfo(8, 8), FeatureInfo(8, 16)] and head.strides == [8, 16]
    with pytest.raises(ValueError, match="num_classes"):
        Head([(8, 8)], 0)
    with pytest.raises(ValueError, match="level"):
        Head([], 2)


def test_batch_targets_checks_the_image_count():
    targets = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    assert batch_targets(targets, torch.device("cpu"), num_images=1)[0].shape == (1, 0, 4)
    with pytest.raises(ValueError, match="outputs for 2 images but 1 targets"):
        batch_targets(targets, torch.device("cpu"), num_images=2)


def test_init_dense_convs():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(8, 8, 3), nn.GroupNorm(2, 8), nn.Conv2d(8, 3, 1))
    init_dense_convs(head, [head[2]], prior_prob=0.01)
    for conv in (head[0], head[2]):
        assert conv.weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert (head[0].bias == 0).all()
    torch.testing.assert_close(head[2].bias, torch.full((3,), -math.log(99.0)))
    with pytest.raises(ValueError, match="prior_prob"):
        init_dense_convs(head, [head[2]], prior_prob=0.0)


class _BoxHead(ComposedDenseHead):
    """A third head from the shared parts only: per position class logits and boxes predicted directly
    (as an anchor head would decode them), trained with FCOS's assigner and a plain loss."""

    def __init__(self, in_features, num_classes, decoder=None):
        super().__init__(in_features, num_classes)
        self.cls = nn.Conv2d(self.in_features[0].channels, num_classes, 1)
        self.box = nn.Conv2d(self.in_features[0].channels, 4, 1)
        init_dense_convs(self, [self.cls], prior_prob=0.5)
        self.set_parts(None, None, decoder, default_assigner=FCOSAssigner, default_loss=nn.L1Loss)

    def forward(self, features):
        self.check_levels(features)
        cls = [self.cls(x).flatten(2).transpose(1, 2) for x in features]  # (B, HW, K)
        boxes = [self.box(x).flatten(2).transpose(1, 2).cumsum(-1) * s for x, s in zip(features, self.strides)]
        return self.dense_outputs(features, cls_logits=cls, boxes=boxes)

    def loss(self, outputs, targets):
        gt = batch_targets(targets, outputs["boxes"].device, num_images=outputs["boxes"].shape[0])
        assigned = self.assigner(outputs["points"], outputs["point_strides"], *gt)
        return {"loss": self.criterion(outputs["boxes"] * assigned.scores[..., None], assigned.boxes)}

    def scores_and_boxes(self, outputs, image_size):
        return outputs["cls_logits"].sigmoid(), outputs["boxes"].clamp(min=0, max=min(image_size))


def test_composed_head_shares_parts_decoding_and_level_check():
    torch.manual_seed(0)
    head = _BoxHead([(8, 8), (8, 16)], 3, decoder=DenseDecoder(score_threshold=0.0, max_detections=5))
    assert isinstance(head.assigner, FCOSAssigner) and isinstance(head.criterion, nn.L1Loss)
    assert list(head.state_dict()) == ["cls.weight", "cls.bias", "box.weight", "box.bias"]
    feats = [torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)]
    out = head(feats)
    targets = [{"boxes": torch.tensor([[0.0, 0, 16, 16]]), "labels": torch.tensor([1])}] * 2
    assert torch.isfinite(head.loss(out, targets)["loss"])
    dets = head.predict(out, (32, 32))
    boxes, scores, labels, counts = head.predict_padded(out, (32, 32), [16, 4])
    for b, det in enumerate(dets):
        assert len(det["scores"]) == int(counts[b]) == 5
        assert torch.equal(scores[b], det["scores"]) and torch.equal(labels[b], det["labels"])
        assert torch.equal(boxes[b], det["boxes"])
        assert torch.equal(det["level"], (det["point_index"] >= 16).long())
    with pytest.raises(ValueError, match="_BoxHead built for 2 levels, got 1 feature maps"):
        head(feats[:1])
