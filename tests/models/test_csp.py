"""Tests for detkit.models.csp (CSPBackbone, CSPBlock, SPPF, Bottleneck) and the FPN's bottom-up path (PAN)."""

from functools import partial

import pytest
import torch
from torch import nn

from detkit.models import FPN, CSPBackbone, Detector, TaskAlignedHead
from detkit.models.backbones import FeatureInfo
from detkit.models.csp import SPPF, Bottleneck, CSPBlock


@pytest.mark.parametrize("downsample", ["conv", "maxpool"])
def test_feature_info_matches_outputs_and_416_stays_416(downsample):
    backbone = CSPBackbone(widths=[8, 16, 24, 32, 40], depths=[1, 1, 2, 1], downsample=downsample).eval()
    outs = backbone(torch.rand(1, 3, 416, 416))
    assert [FeatureInfo(o.shape[1], 416 // o.shape[-1]) for o in outs] == backbone.feature_info
    assert [tuple(o.shape[-2:]) for o in outs] == [(52, 52), (26, 26), (13, 13)]
    assert backbone.feature_info == [FeatureInfo(24, 8), FeatureInfo(32, 16), FeatureInfo(40, 32)]


def test_conv_knobs_reach_the_layers():
    backbone = CSPBackbone(
        widths=[8, 16, 32, 32, 64], depths=[1, 1, 1, 1], kernel_size=5, dilation=2, groups=4, norm="group",
        activation="relu", downsample="maxpool", sppf=False,
    )  # fmt: skip
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    assert {m.kernel_size for m in convs} == {(5, 5), (1, 1)}
    bottleneck_second = [b.conv2.conv for b in backbone.modules() if isinstance(b, Bottleneck)]
    assert len(bottleneck_second) == 4
    assert all(c.dilation == (2, 2) and c.groups == 4 for c in bottleneck_second)
    # max-pooling halves the resolution: the only strided convolution is the stem's
    assert [c.stride for c in convs if c.stride != (1, 1)] == [(2, 2)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in backbone.modules()) == 4
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.SiLU)) for m in backbone.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in backbone.modules())
    assert not any(isinstance(m, SPPF) for m in backbone.modules())
    assert any(isinstance(m, SPPF) for m in CSPBackbone(widths=[8, 16, 24, 32, 40]).modules())


@pytest.mark.parametrize(
    "kwargs, match",
    [({"widths": [8, 16, 32]}, "widths"), ({"depths": [1, 1]}, "depths"), ({"downsample": "avg"}, "downsample"),
     ({"groups": 3}, "groups"), ({"expansion": 0.0}, "expansion"), ({"sppf_pool_size": 4}, "pool_size")],
)  # fmt: skip
def test_bad_settings_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CSPBackbone(**kwargs)


def test_csp_block_keeps_half_the_features_past_the_bottlenecks():
    torch.manual_seed(0)
    block = CSPBlock(16, 24, depth=2, expansion=0.5).eval()
    assert block.hidden == 12 and block.fuse.conv.in_channels == (2 + 2) * 12
    x = torch.rand(2, 16, 9, 9)
    assert block(x).shape == (2, 24, 9, 9)
    # Switching off every bottleneck's contribution changes the output: the fusion sees their outputs.
    reference = block(x)
    for bottleneck in block.bottlenecks:
        nn.init.zeros_(bottleneck.conv2.norm.weight)
        nn.init.zeros_(bottleneck.conv2.norm.bias)
    assert not torch.allclose(block(x), reference)
    assert CSPBlock(8, 8, depth=0)(torch.rand(1, 8, 4, 4)).shape == (1, 8, 4, 4)


def test_bottleneck_is_residual():
    block = Bottleneck(8).eval()
    nn.init.zeros_(block.conv2.norm.weight)
    nn.init.zeros_(block.conv2.norm.bias)  # the residual branch now gives silu(0) = 0
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(block(x), x)
    assert not torch.equal(Bottleneck(8, shortcut=False).eval()(x), x)


def test_sppf_chained_pools_see_what_parallel_pools_of_5_9_13_see():
    sppf = SPPF(8, 8, pool_size=5).eval()
    y = torch.randn(1, 4, 20, 20)
    once, twice, thrice = sppf.pool(y), sppf.pool(sppf.pool(y)), sppf.pool(sppf.pool(sppf.pool(y)))
    for chained, size in ((once, 5), (twice, 9), (thrice, 13)):
        assert torch.equal(chained, nn.MaxPool2d(size, 1, size // 2)(y))
    assert sppf(torch.randn(2, 8, 13, 13)).shape == (2, 8, 13, 13)


def _levels(features: list[FeatureInfo], size: int = 64) -> list[torch.Tensor]:
    return [torch.randn(1, f.channels, size // f.stride, size // f.stride) for f in features]


@pytest.mark.parametrize("extra_levels", [0, 1, 2])
def test_pan_feature_info_matches_outputs(extra_levels):
    features = [FeatureInfo(8, 8), FeatureInfo(16, 16), FeatureInfo(32, 32)]
    neck = FPN(features, out_channels=16, extra_levels=extra_levels, bottom_up=True).eval()
    outs = neck(_levels(features, 256))
    assert [FeatureInfo(o.shape[1], 256 // o.shape[-1]) for o in outs] == neck.feature_info
    assert len(outs) == 3 + extra_levels


def test_bottom_up_path_carries_fine_detail_to_the_coarsest_level():
    """A top-down FPN's coarsest output depends on the coarsest input only; with PAN, a change in the
    finest input reaches it."""
    torch.manual_seed(0)
    features = [FeatureInfo(8, 8), FeatureInfo(16, 16), FeatureInfo(32, 32)]
    inputs = _levels(features)
    changed = [inputs[0] + torch.randn_like(inputs[0]), *inputs[1:]]
    for bottom_up, reaches in ((False, False), (True, True)):
        neck = FPN(features, out_channels=16, extra_levels=0, bottom_up=bottom_up).eval()
        with torch.no_grad():
            coarse, coarse_changed = neck(inputs)[-1], neck(changed)[-1]
        assert (not torch.allclose(coarse, coarse_changed)) == reaches


def test_csp_pan_detector_learns_a_few_steps():
    torch.manual_seed(0)
    detector = Detector(
        2, CSPBackbone(widths=[8, 16, 24, 32, 48], depths=[1, 1, 1, 1]),
        partial(FPN, out_channels=32, extra_levels=0, bottom_up=True), partial(TaskAlignedHead, num_convs=1),
    )  # fmt: skip
    images = torch.rand(2, 3, 96, 96)
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[30.0, 20.0, 90.0, 70.0], [5.0, 5.0, 25.0, 30.0]]), "labels": torch.tensor([0, 1])}]  # fmt: skip
    optimizer = torch.optim.AdamW(detector.parameters(), lr=0.003)
    losses = []
    for _ in range(25):
        loss = detector.loss(images, targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
