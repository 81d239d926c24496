"""Tests for detkit.models.necks.fpn."""

import pytest
import torch

from detkit.models import FPN, FeatureInfo, Neck

IN = [FeatureInfo(8, 8), FeatureInfo(16, 16), FeatureInfo(24, 32)]


@pytest.mark.parametrize("extra_levels", [0, 1, 2])
def test_outputs_match_feature_info(extra_levels):
    fpn = FPN(IN, out_channels=12, extra_levels=extra_levels)
    assert isinstance(fpn, Neck) and fpn.in_features == IN
    expected_strides = [8, 16, 32, 64, 128][: 3 + extra_levels]
    assert [i.stride for i in fpn.feature_info] == expected_strides
    assert all(i.channels == 12 for i in fpn.feature_info)
    h, w = 128, 256
    feats = [torch.randn(2, c, h // s, w // s) for c, s in IN]
    outs = fpn(feats)
    assert len(outs) == len(fpn.feature_info)
    for out, info in zip(outs, fpn.feature_info):
        assert out.shape == (2, 12, h // info.stride, w // info.stride)


def test_accepts_plain_tuples_and_validates():
    assert FPN([(4, 4), (8, 8)], out_channels=8, extra_levels=0).feature_info == [(8, 4), (8, 8)]
    with pytest.raises(ValueError, match="strides"):
        FPN([FeatureInfo(8, 16), FeatureInfo(8, 8)])
    with pytest.raises(ValueError, match="extra_levels"):
        FPN(IN, extra_levels=3)
    with pytest.raises(ValueError, match="3 input levels"):
        FPN(IN)([torch.randn(1, 8, 4, 4)])


def test_extra_levels_from_the_last_input_map():
    """extra_from='input': P6 is computed from C5 (the RetinaNet paper, torchvision's v2), not from P5."""
    fpn = FPN([FeatureInfo(8, 8), FeatureInfo(32, 16)], out_channels=16, extra_levels=2, extra_from="input")
    assert fpn.fpn.extra_blocks.p6.in_channels == 32
    c = [torch.randn(1, 8, 16, 16), torch.randn(1, 32, 8, 8)]
    out = fpn(c)
    assert [tuple(o.shape[-2:]) for o in out] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    torch.testing.assert_close(out[2], fpn.fpn.extra_blocks.p6(c[1]))
    with pytest.raises(ValueError, match="extra_levels=2"):
        FPN([FeatureInfo(8, 8), FeatureInfo(32, 16)], out_channels=16, extra_levels=1, extra_from="input")
    with pytest.raises(ValueError, match="differ from out_channels"):
        FPN([FeatureInfo(8, 8), FeatureInfo(16, 16)], out_channels=16, extra_levels=2, extra_from="input")
