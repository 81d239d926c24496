"""torchvision's FCOS and RetinaNet v2, converted into detkit compositions, compute what torchvision computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import detection

from detkit.models import DenseDecoder
from detkit.models.torchvision_import import (
    convert_state_dict,
    fcos_resnet50_fpn,
    load_torchvision_weights,
    parse_torchvision_source,
    read_torchvision_state,
    retinanet_resnet50_fpn_v2,
)

SIZE = (256, 384)  # multiples of 128: torchvision's anchor strides are then the levels' own (image // grid)


def _calibrated(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with seeded random weights that give realistic activations and detections.

    BatchNorm statistics come from one training-mode pass over a random batch (so activations stay
    of order 1 through ResNet-50); the classifier bias and the box branch are re-drawn so that many
    positions score above the decoding thresholds and boxes have positive sizes.
    """
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
        if isinstance(m, nn.GroupNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, std=0.1)
    model.train()
    with torch.no_grad():
        model.backbone(torch.randn(2, 3, *SIZE))
    head = model.head
    with torch.no_grad():
        # Like a trained detector: most classes never fire, two fire at some places. Fewer than the
        # decoders' 1000 candidates per level pass the threshold, so which ones are kept does not
        # hinge on float rounding at the 1000th score.
        bias = head.classification_head.cls_logits.bias.view(-1, 91)  # (A, K)
        bias.fill_(-9.0)
        bias[:, [1, 3]] = torch.tensor([-1.9, -2.2]) if hasattr(head.regression_head, "bbox_ctrness") else torch.tensor([-3.6, -3.9])
        nn.init.normal_(head.regression_head.bbox_reg.weight, std=0.02)
        nn.init.uniform_(head.regression_head.bbox_reg.bias, 0.3, 1.5)
        if hasattr(head.regression_head, "bbox_ctrness"):
            nn.init.normal_(head.regression_head.bbox_ctrness.bias, std=1.0)
    return model.eval()


def _image(seed: int) -> torch.Tensor:
    """A smooth random image ``(3, H, W)`` in ``[0, 1]``."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, SIZE[0] // 16, SIZE[1] // 16, generator=g)
    return torch.nn.functional.interpolate(coarse, size=SIZE, mode="bilinear", align_corners=False)[0]


def _pair(name: str, seed: int = 0):
    """A calibrated torchvision model and detkit's composition loaded from its state dict."""
    torchvision_builder = getattr(detection, name)
    ours_builder = {"fcos_resnet50_fpn": fcos_resnet50_fpn, "retinanet_resnet50_fpn_v2": retinanet_resnet50_fpn_v2}[name]
    # weights=None builds plain BatchNorm; torchvision then also does the same with our image size (no resize).
    torch.manual_seed(seed)
    theirs = _calibrated(torchvision_builder(weights=None, weights_backbone=None, min_size=SIZE[0], max_size=SIZE[1]), seed)
    ours = ours_builder(freeze_norm=False, frozen_stages=0)
    ours.channels_last = False  # the same memory layout as torchvision: the same convolution kernels
    ours.to(memory_format=torch.contiguous_format)
    loaded, reinitialised = load_torchvision_weights(ours, name, theirs.state_dict())
    assert reinitialised == [] and len(loaded) == len(ours.state_dict())
    return theirs, ours.eval()


def _normalised(theirs: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """torchvision's own normalisation of a batch (no resize at this size, no padding at multiples of 32)."""
    batch, _ = theirs.transform(list(images))
    assert tuple(batch.tensors.shape[-2:]) == SIZE
    return batch.tensors


@pytest.mark.parametrize("name", ["fcos_resnet50_fpn", "retinanet_resnet50_fpn_v2"])
def test_head_outputs_equal_torchvision(name):
    theirs, ours = _pair(name)
    images = torch.stack([_image(1), _image(2)])
    x = _normalised(theirs, images)
    with torch.no_grad():
        features = list(theirs.backbone(x).values())
        expected = theirs.head(features)
        got = ours.head(ours.neck(ours.backbone(x)))
    for a, b in zip(features, ours.neck(ours.backbone(x))):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["cls_logits"], expected["cls_logits"], atol=1e-5, rtol=1e-5)
    if name == "fcos_resnet50_fpn":
        # torchvision's regression is in anchor sizes (= strides); detkit's ltrb is in pixels.
        ltrb = expected["bbox_regression"] * got["point_strides"][None, :, None]
        torch.testing.assert_close(got["ltrb"], ltrb, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["quality_logits"], expected["bbox_ctrness"][..., 0], atol=1e-5, rtol=1e-5)
    else:
        torch.testing.assert_close(got["box_deltas"], expected["bbox_regression"], atol=1e-5, rtol=1e-5)
        anchors = theirs.anchor_generator(theirs.transform(list(images))[0], features)[0]
        torch.testing.assert_close(got["anchors"], anchors, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["fcos_resnet50_fpn", "retinanet_resnet50_fpn_v2"])
def test_detections_equal_torchvision(name):
    theirs, ours = _pair(name, seed=3)
    images = torch.stack([_image(4), _image(5)])
    with torch.no_grad():
        expected = theirs(list(images))
        outputs = ours(images)
    scores, _ = ours.head.scores_and_boxes(outputs, SIZE)
    level_sizes = torch.unique_consecutive(outputs["point_strides"], return_counts=True)[1].tolist()
    passing = [int((level > ours.head.decoder.score_threshold).sum(dim=(1, 2)).max()) for level in scores.split(level_sizes, 1)]
    assert max(passing) < 1000, passing
    got = ours.predict_batch(images)
    for want, have in zip(expected, got):
        # detkit drops boxes that clipping to the image leaves empty (their centre was decoded
        # outside it); torchvision keeps them. They overlap nothing, so NMS is the same without them.
        boxes = want["boxes"]
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        full = len(boxes) == ours.head.decoder.max_detections
        want = {k: v[nonempty] for k, v in want.items()}
        if full:  # torchvision's empty boxes took places that detkit fills with the next ones
            have = {k: v[: len(want["boxes"])] for k, v in have.items()}
        assert len(want["boxes"]) > 20, "the calibration should give many detections"
        assert len(have["boxes"]) == len(want["boxes"])
        assert torch.equal(have["labels"], want["labels"])
        torch.testing.assert_close(have["scores"], want["scores"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(have["boxes"], want["boxes"], atol=1e-5, rtol=1e-4)


def test_fcos_decoding_thresholds_are_torchvision_defaults():
    theirs = detection.fcos_resnet50_fpn(weights=None, weights_backbone=None)
    decoder: DenseDecoder = fcos_resnet50_fpn(backbone_weights=None).head.decoder
    assert (decoder.score_threshold, decoder.nms_iou, decoder.max_detections, decoder.topk_per_level) == (
        theirs.score_thresh, theirs.nms_thresh, theirs.detections_per_img, theirs.topk_candidates
    )
    theirs = detection.retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None)
    decoder = retinanet_resnet50_fpn_v2().head.decoder
    assert (decoder.score_threshold, decoder.nms_iou, decoder.max_detections, decoder.topk_per_level) == (
        theirs.score_thresh, theirs.nms_thresh, theirs.detections_per_img, theirs.topk_candidates
    )


def test_other_class_count_reinitialises_only_the_classifier():
    theirs = detection.fcos_resnet50_fpn(weights=None, weights_backbone=None)
    ours = fcos_resnet50_fpn(num_classes=2)
    prior_bias = ours.head.cls_logits.bias.detach().clone()
    loaded, reinitialised = load_torchvision_weights(ours, "fcos_resnet50_fpn", theirs.state_dict())
    assert reinitialised == ["head.cls_logits.bias", "head.cls_logits.weight"]
    assert torch.equal(ours.head.cls_logits.bias, prior_bias)
    assert torch.equal(ours.head.box_reg.weight, theirs.head.regression_head.bbox_reg.weight)
    assert "backbone.body.layer4.2.conv3.weight" in loaded


def test_unknown_and_missing_tensors_are_named():
    state = detection.fcos_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    with pytest.raises(ValueError, match="head.regression_head.extra.weight"):
        convert_state_dict("fcos_resnet50_fpn", {**state, "head.regression_head.extra.weight": torch.zeros(1)})
    del state["backbone.fpn.extra_blocks.p7.weight"]
    with pytest.raises(ValueError, match=r"missing.*neck\.fpn\.extra_blocks\.p7\.weight"):
        load_torchvision_weights(fcos_resnet50_fpn(), "fcos_resnet50_fpn", state)
    # RetinaNet weights into the FCOS composition: the towers' tensors do not fit.
    retina = detection.retinanet_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict()
    with pytest.raises(ValueError, match="retinanet_resnet50_fpn_v2 weights do not fit"):
        load_torchvision_weights(fcos_resnet50_fpn(), "retinanet_resnet50_fpn_v2", retina)


def test_sources(tmp_path):
    assert parse_torchvision_source("torchvision:fcos_resnet50_fpn:COCO_V1") == ("fcos_resnet50_fpn", "COCO_V1")
    for bad in ("fcos_resnet50_fpn:COCO_V1", "torchvision:fcos_resnet50_fpn", "torchvision:maskrcnn:COCO_V1"):
        with pytest.raises(ValueError):
            parse_torchvision_source(bad)
    with pytest.raises(ValueError, match="unknown weights 'COCO_V9'"):
        read_torchvision_state("torchvision:fcos_resnet50_fpn:COCO_V9")
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        read_torchvision_state(f"torchvision:fcos_resnet50_fpn:{tmp_path / 'nothing.pth'}")
    state = {"a": torch.zeros(2)}
    torch.save(state, tmp_path / "w.pth")
    model, read = read_torchvision_state(f"torchvision:retinanet_resnet50_fpn_v2:{tmp_path / 'w.pth'}")
    assert model == "retinanet_resnet50_fpn_v2" and torch.equal(read["a"], state["a"])
