"""Small building blocks shared by backbones and heads: ``ConvNormAct``."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Literal

from torch import nn

__all__ = ["ConvNormAct", "NormName", "ActivationName", "make_norm", "make_activation"]

NormName = Literal["batch", "group", "none"]
ActivationName = Literal["relu", "silu", "gelu", "leaky_relu", "none"]


def make_norm(norm: NormName, channels: int) -> nn.Module | None:
    """Normalisation layer for ``channels`` feature maps, ``None`` for ``"none"``.

    GroupNorm uses ``gcd(32, channels)`` groups so every channel count is accepted.
    """
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    if norm == "none":
        return None
    raise ValueError(f"norm must be one of 'batch', 'group', 'none', got {norm!r}")


def make_activation(activation: ActivationName) -> nn.Module | None:
    """Activation module, ``None`` for ``"none"`` (``leaky_relu`` uses slope 0.1)."""
    if activation == "relu":
        return nn.ReLU(inplace=True)
    if activation == "silu":
        return nn.SiLU(inplace=True)
    if activation == "gelu":
        return nn.GELU()
    if activation == "leaky_relu":
        return nn.LeakyReLU(0.1, inplace=True)
    if activation == "none":
        return None
    raise ValueError(
        f"activation must be one of 'relu', 'silu', 'gelu', 'leaky_relu', 'none', got {activation!r}"
    )


class ConvNormAct(nn.Sequential):
    """``Conv2d -> norm -> activation`` with "same" padding; children are named conv/norm/act."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm: NormName = "batch",
        activation: ActivationName = "relu",
        bias: bool | None = None,
    ) -> None:
        """Build the block.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            kernel_size: Square kernel size; padding is ``dilation * (kernel_size - 1) // 2``.
            stride: Convolution stride.
            dilation: Convolution dilation.
            groups: Convolution groups; must divide both channel counts.
            norm: Normalisation after the convolution (``"group"`` uses ``gcd(32, out_channels)``
                groups). The convolution has a bias only when ``norm="none"``.
            activation: Activation after the normalisation.
            bias: Give the convolution a bias; ``None``: only when ``norm="none"`` (a bias before
                BatchNorm is cancelled by it; torchvision's FCOS towers keep one before GroupNorm).
        """
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
            )
        if kernel_size < 1 or stride < 1 or dilation < 1:
            raise ValueError(
                f"kernel_size, stride and dilation must be >= 1, got {kernel_size}, {stride}, {dilation}"
            )
        norm_layer = make_norm(norm, out_channels)
        act_layer = make_activation(activation)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=norm_layer is None if bias is None else bias,
        )
        if norm_layer is not None:
            layers["norm"] = norm_layer
        if act_layer is not None:
            layers["act"] = act_layer
        super().__init__(layers)
        self.in_channels = in_channels
        self.out_channels = out_channels
