"""Tests for detkit.models.backbones (never downloads weights)."""

import pytest
import torch
from torch import nn
from torchvision import models as tvm
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.models.backbones import (
    FeatureInfo,
    MobileNetV2Backbone,
    MobileNetV3Backbone,
    PlainConvBackbone,
    ResNetBackbone,
    resolve_weights,
)


def _check_feature_info(backbone, size=64):
    backbone.eval()
    with torch.no_grad():
        feats = backbone(torch.randn(2, 3, size, size + 32))
    assert len(feats) == len(backbone.feature_info)
    for f, info in zip(feats, backbone.feature_info):
        assert isinstance(info, FeatureInfo)
        assert f.shape == (2, info.channels, -(-size // info.stride), -(-(size + 32) // info.stride))
    strides = [i.stride for i in backbone.feature_info]
    assert strides == sorted(strides)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ResNetBackbone(depth=18),
        lambda: ResNetBackbone(depth=34, freeze_norm=False),
        lambda: MobileNetV3Backbone(),
        lambda: MobileNetV2Backbone(),
        lambda: MobileNetV2Backbone(frozen_stages=2, freeze_norm=True),
        lambda: PlainConvBackbone(),
        lambda: PlainConvBackbone(widths=[8, 8, 16, 24, 32, 48], blocks_per_stage=2, norm="group", activation="silu"),
    ],
    ids=["resnet18", "resnet34", "mobilenetv3", "mobilenetv2", "mobilenetv2_frozen", "plain", "plain6"],
)
def test_feature_info_matches_outputs(make):
    _check_feature_info(make())


def test_resnet50_feature_info():
    backbone = ResNetBackbone(depth=50)
    assert [i.channels for i in backbone.feature_info] == [512, 1024, 2048]
    _check_feature_info(backbone, size=32)


def test_declared_strides():
    assert [i.stride for i in ResNetBackbone(depth=18).feature_info] == [8, 16, 32]
    assert [i.stride for i in MobileNetV3Backbone().feature_info] == [8, 16, 32]
    assert MobileNetV2Backbone().feature_info == [(32, 8), (96, 16), (1280, 32)]
    assert PlainConvBackbone(widths=[8, 16, 32, 64]).feature_info == [(16, 4), (32, 8), (64, 16)]


def test_local_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    reference = tvm.resnet18()
    with torch.no_grad():  # make BN statistics non-trivial so they are checked too
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    state = reference.state_dict()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    for freeze_norm in (True, False):
        backbone = ResNetBackbone(depth=18, weights=str(path), freeze_norm=freeze_norm)
        loaded = backbone.body.state_dict()
        for key, value in loaded.items():
            assert torch.equal(value, state[key]), key
        assert torch.equal(backbone.body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    # Wrapped {"state_dict": ...} form, without the classifier.
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("fc.")}}, wrapped)
    backbone = ResNetBackbone(depth=18, weights=str(wrapped))
    assert torch.equal(backbone.body.bn1.running_mean, state["bn1.running_mean"])


def test_local_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ResNetBackbone(depth=18, weights=str(tmp_path / "missing.pth"))
    partial = {k: v for k, v in tvm.resnet18().state_dict().items() if not k.startswith("layer4.")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="layer4"):
        ResNetBackbone(depth=18, weights=str(tmp_path / "partial.pth"))
    torch.save({"x": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="state dict"):
        ResNetBackbone(depth=18, weights=str(tmp_path / "bad.pth"))


def test_mobilenet_local_weights(tmp_path):
    state = tvm.mobilenet_v3_large().state_dict()
    torch.save(state, tmp_path / "mnv3.pth")
    backbone = MobileNetV3Backbone(weights=str(tmp_path / "mnv3.pth"))
    assert torch.equal(backbone.stages[0][0][0].weight, state["features.0.0.weight"])
    assert torch.equal(backbone.stages[5][-1][0].weight, state["features.16.0.weight"])


def _randomise_bn_statistics(model):
    with torch.no_grad():  # non-trivial statistics, so that loading them is checked too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)


def test_mobilenet_v2_local_weights(tmp_path):
    torch.manual_seed(0)
    reference = tvm.mobilenet_v2()
    _randomise_bn_statistics(reference)
    state = reference.state_dict()
    torch.save(state, tmp_path / "mnv2.pth")
    for freeze_norm in (False, True):
        backbone = MobileNetV2Backbone(weights=str(tmp_path / "mnv2.pth"), freeze_norm=freeze_norm)
        # stages are features[0], [1], [2:4], [4:7], [7:14], [14:19] (slices keep their indices)
        loaded = {f"features.{k}": v for stage in backbone.stages for k, v in stage.state_dict().items()}
        expected = {k: v for k, v in state.items() if k.startswith("features.")}
        if freeze_norm:  # FrozenBatchNorm2d keeps no batch counter
            expected = {k: v for k, v in expected.items() if not k.endswith("num_batches_tracked")}
        assert loaded.keys() == expected.keys()
        for key, value in expected.items():
            assert torch.equal(loaded[key], value), key
    # Same outputs as torchvision's own network with those weights.
    reference.eval()
    backbone = MobileNetV2Backbone(weights=str(tmp_path / "mnv2.pth")).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(images)[-1], reference.features(images), atol=1e-5)
    # A file without the classifier loads too; one missing backbone tensors does not.
    torch.save({k: v for k, v in state.items() if not k.startswith("classifier.")}, tmp_path / "no_head.pth")
    MobileNetV2Backbone(weights=str(tmp_path / "no_head.pth"))
    torch.save({k: v for k, v in state.items() if not k.startswith("features.18.")}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="features.18"):
        MobileNetV2Backbone(weights=str(tmp_path / "partial.pth"))


def test_weight_names_resolve_without_download():
    assert resolve_weights("IMAGENET1K_V1", tvm.ResNet18_Weights) is tvm.ResNet18_Weights.IMAGENET1K_V1
    assert resolve_weights("ResNet50_Weights.IMAGENET1K_V2", tvm.ResNet50_Weights) is tvm.ResNet50_Weights.IMAGENET1K_V2
    assert resolve_weights("DEFAULT", tvm.ResNet50_Weights) is tvm.ResNet50_Weights.IMAGENET1K_V2
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        resolve_weights("IMAGENET22K", tvm.ResNet18_Weights)
    with pytest.raises(ValueError, match="ResNet50_Weights"):
        resolve_weights("ResNet18_Weights.IMAGENET1K_V1", tvm.ResNet50_Weights)
    with pytest.raises(ValueError, match="valid names"):
        ResNetBackbone(depth=18, weights="NOT_A_WEIGHT")
    with pytest.raises(ValueError, match="valid names"):
        MobileNetV3Backbone(weights="NOT_A_WEIGHT")
    with pytest.raises(ValueError, match="MobileNet_V2_Weights"):
        MobileNetV2Backbone(weights="MobileNet_V3_Large_Weights.IMAGENET1K_V1")


def test_resnet_frozen_stages_and_norm():
    backbone = ResNetBackbone(depth=18, frozen_stages=2, freeze_norm=False)
    body = backbone.body
    for module in (body.conv1, body.bn1, body.layer1, body.layer2):
        assert all(not p.requires_grad for p in module.parameters())
    for module in (body.layer3, body.layer4):
        assert all(p.requires_grad for p in module.parameters())
    backbone.train()
    assert not body.layer2[0].bn1.training and body.layer3[0].bn1.training
    feats = backbone(torch.randn(2, 3, 64, 64))
    sum(f.mean() for f in feats).backward()
    assert body.conv1.weight.grad is None and body.layer3[0].conv1.weight.grad is not None

    frozen_bn = ResNetBackbone(depth=18, frozen_stages=0, freeze_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen_bn.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen_bn.modules())
    assert all(p.requires_grad for p in frozen_bn.parameters())
    with pytest.raises(ValueError, match="frozen_stages"):
        ResNetBackbone(depth=18, frozen_stages=5)


def test_mobilenet_frozen_stages():
    backbone = MobileNetV3Backbone(frozen_stages=2)
    for i, stage in enumerate(backbone.stages):
        assert all(p.requires_grad == (i > 2) for p in stage.parameters()), i
    assert all(p.requires_grad for p in MobileNetV3Backbone().parameters())


def test_mobilenet_v2_frozen_stages_and_norm():
    backbone = MobileNetV2Backbone(frozen_stages=3)
    for i, stage in enumerate(backbone.stages):
        assert all(p.requires_grad == (i > 3) for p in stage.parameters()), i
    backbone.train()
    assert not backbone.stages[3][0].conv[0][1].training and backbone.stages[4][0].conv[0][1].training
    feats = backbone(torch.randn(2, 3, 64, 64))
    sum(f.mean() for f in feats).backward()
    assert backbone.stages[0][0][0].weight.grad is None and backbone.stages[4][0].conv[0][0].weight.grad is not None
    assert all(p.requires_grad for p in MobileNetV2Backbone().parameters())

    frozen_bn = MobileNetV2Backbone(freeze_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen_bn.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in frozen_bn.modules())
    with pytest.raises(ValueError, match="frozen_stages"):
        MobileNetV2Backbone(frozen_stages=6)


def test_plain_backbone_validation():
    with pytest.raises(ValueError, match="widths"):
        PlainConvBackbone(widths=[8, 16, 32])


def test_plain_conv_width_multiple_and_max_pool_downsampling():
    from detkit.models import PlainConvBackbone

    narrow = PlainConvBackbone(widths=[16, 32, 64, 96, 128], width_multiple=0.5)
    assert [f.channels for f in narrow.feature_info] == [32, 48, 64]  # rounded to multiples of 8
    pooled = PlainConvBackbone(downsample="maxpool")
    maps = pooled(torch.zeros(1, 3, 64, 96))
    assert [tuple(m.shape[1:]) for m in maps] == [(64, 8, 12), (128, 4, 6), (128, 2, 3)]
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in pooled.modules())
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in PlainConvBackbone().modules())
    for bad in ({"width_multiple": 0}, {"downsample": "avgpool"}):
        with pytest.raises(ValueError):
            PlainConvBackbone(**bad)
