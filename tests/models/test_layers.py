"""Tests for detkit.models.layers."""

import pytest
import torch
from torch import nn

from detkit.models.layers import ConvNormAct


@pytest.mark.parametrize("kernel_size,dilation", [(1, 1), (3, 1), (3, 2), (5, 1), (5, 3)])
def test_same_padding_keeps_size(kernel_size, dilation):
    block = ConvNormAct(4, 8, kernel_size=kernel_size, dilation=dilation)
    assert block.conv.padding == (dilation * (kernel_size - 1) // 2,) * 2
    assert block(torch.randn(2, 4, 13, 11)).shape == (2, 8, 13, 11)


def test_stride_two_halves():
    assert ConvNormAct(3, 6, stride=2)(torch.randn(1, 3, 16, 20)).shape == (1, 6, 8, 10)


def test_bias_only_without_norm():
    assert ConvNormAct(4, 8, norm="batch").conv.bias is None
    assert ConvNormAct(4, 8, norm="group").conv.bias is None
    block = ConvNormAct(4, 8, norm="none", activation="none")
    assert block.conv.bias is not None
    assert [name for name, _ in block.named_children()] == ["conv"]
    # Asked for: a bias before GroupNorm (torchvision's FCOS towers), none without a norm.
    assert ConvNormAct(4, 8, norm="group", bias=True).conv.bias is not None
    assert ConvNormAct(4, 8, norm="none", bias=False).conv.bias is None


def test_group_norm_groups_is_gcd():
    assert ConvNormAct(4, 48, norm="group").norm.num_groups == 16
    assert ConvNormAct(4, 64, norm="group").norm.num_groups == 32
    assert ConvNormAct(4, 6, norm="group").norm.num_groups == 2


@pytest.mark.parametrize(
    "name,cls", [("relu", nn.ReLU), ("silu", nn.SiLU), ("gelu", nn.GELU), ("leaky_relu", nn.LeakyReLU)]
)
def test_activation_choice(name, cls):
    block = ConvNormAct(4, 8, activation=name)
    assert isinstance(block.act, cls)
    assert isinstance(block.norm, nn.BatchNorm2d)


def test_groups_depthwise():
    block = ConvNormAct(8, 8, groups=8)
    assert block.conv.weight.shape == (8, 1, 3, 3)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="groups"):
        ConvNormAct(6, 8, groups=4)
    with pytest.raises(ValueError, match="norm"):
        ConvNormAct(4, 8, norm="layer")
    with pytest.raises(ValueError, match="activation"):
        ConvNormAct(4, 8, activation="tanh")
