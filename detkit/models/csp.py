"""Cross-stage-partial backbone for training from scratch: CSP stages of residual bottlenecks and a fast spatial pyramid pooling block."""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from torch import Tensor, nn

from detkit.models.backbones import StagedBackbone
from detkit.models.layers import ActivationName, ConvNormAct, NormName

__all__ = ["Bottleneck", "CSPBlock", "SPPF", "CSPBackbone"]


class Bottleneck(nn.Module):
    """Two ``kernel_size`` convolutions with a residual connection: ``x + conv(conv(x))``."""

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        norm: NormName = "batch",
        activation: ActivationName = "silu",
        shortcut: bool = True,
    ) -> None:
        """Build the block.

        Args:
            channels: Input and output channels.
            kernel_size: Kernel of both convolutions.
            dilation: Dilation of the second convolution (a wider view at the same cost).
            groups: Groups of the second convolution (``channels`` for a depthwise one).
            norm: Normalisation after each convolution.
            activation: Activation after each normalisation.
            shortcut: Add the input to the output.
        """
        super().__init__()
        block = partial(ConvNormAct, kernel_size=kernel_size, norm=norm, activation=activation)
        self.conv1 = block(channels, channels)
        self.conv2 = block(channels, channels, dilation=dilation, groups=groups)
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPBlock(nn.Module):
    """Cross-stage-partial block with every intermediate output kept (the C2f / ELAN idea).

    A 1x1 convolution makes ``2 * hidden`` channels and splits them in two halves; the second half
    runs through ``depth`` bottlenecks one after the other, and the two halves plus every bottleneck's
    output (``(2 + depth) * hidden`` channels) are fused by a final 1x1 convolution. Half the features
    skip the bottlenecks (cheap, and gradients reach the input by a short path), and the fusion sees
    every depth of the chain.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int = 1,
        expansion: float = 0.5,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        norm: NormName = "batch",
        activation: ActivationName = "silu",
        shortcut: bool = True,
    ) -> None:
        """Build the block.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            depth: Bottlenecks in the chain (0: a split-and-fuse of two 1x1 convolutions).
            expansion: ``hidden = round(out_channels * expansion)`` channels per half.
            kernel_size: Kernel of the bottlenecks' convolutions.
            dilation: Dilation of each bottleneck's second convolution.
            groups: Groups of each bottleneck's second convolution (must divide ``hidden``).
            norm: Normalisation after each convolution.
            activation: Activation after each normalisation.
            shortcut: Residual connections in the bottlenecks.
        """
        super().__init__()
        if depth < 0:
            raise ValueError(f"CSPBlock depth must be >= 0, got {depth}")
        if not 0 < expansion <= 1:
            raise ValueError(f"CSPBlock expansion must be in (0, 1], got {expansion}")
        hidden = max(1, round(out_channels * expansion))
        if hidden % groups:
            raise ValueError(f"groups={groups} must divide the CSP block's hidden width {hidden}")
        point = partial(ConvNormAct, kernel_size=1, norm=norm, activation=activation)
        self.hidden = hidden
        self.split = point(in_channels, 2 * hidden)
        self.bottlenecks = nn.ModuleList(
            Bottleneck(hidden, kernel_size, dilation, groups, norm, activation, shortcut) for _ in range(depth)
        )
        self.fuse = point((2 + depth) * hidden, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        parts = list(self.split(x).chunk(2, dim=1))
        for bottleneck in self.bottlenecks:
            parts.append(bottleneck(parts[-1]))
        return self.fuse(torch.cat(parts, dim=1))


class SPPF(nn.Module):
    """Fast spatial pyramid pooling: three chained ``pool_size`` max-pools (receptive fields of
    ``pool_size``, ``2 * pool_size - 1`` and ``3 * pool_size - 2`` cells, as parallel pools of those
    sizes would give) concatenated with their input and fused by a 1x1 convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        pool_size: int = 5,
        norm: NormName = "batch",
        activation: ActivationName = "silu",
    ) -> None:
        """Build the block.

        Args:
            in_channels: Input channels (halved by a 1x1 convolution before pooling).
            out_channels: Output channels.
            pool_size: Odd kernel of each max-pool (stride 1, "same" padding).
            norm: Normalisation after each convolution.
            activation: Activation after each normalisation.
        """
        super().__init__()
        if pool_size < 1 or pool_size % 2 == 0:
            raise ValueError(f"SPPF pool_size must be odd and >= 1, got {pool_size}")
        hidden = max(1, in_channels // 2)
        self.reduce = ConvNormAct(in_channels, hidden, 1, norm=norm, activation=activation)
        self.pool = nn.MaxPool2d(pool_size, stride=1, padding=pool_size // 2)
        self.fuse = ConvNormAct(4 * hidden, out_channels, 1, norm=norm, activation=activation)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        parts = [self.reduce(x)]
        for _ in range(3):
            parts.append(self.pool(parts[-1]))
        return self.fuse(torch.cat(parts, dim=1))


class CSPBackbone(StagedBackbone):
    """A small detection backbone for training from scratch: a stem, then stages that each halve the
    resolution and run a :class:`CSPBlock`, with an :class:`SPPF` block at the end; returns the last
    three stages (strides 8, 16, 32 with the default five widths).

    Every convolution is ``ConvNormAct``, so the usual knobs apply everywhere: kernel size, dilation,
    groups, norm and activation; ``downsample`` chooses between a strided convolution and max-pooling
    (then a 1x1 convolution) to halve the resolution. With strides up to 32, a 416 px input stays
    416 px (13 cells at stride 32).
    """

    def __init__(
        self,
        widths: list[int] = [16, 32, 64, 128, 256],  # noqa: B006 (read-only, CLI-friendly default)
        depths: list[int] = [1, 2, 2, 1],  # noqa: B006
        expansion: float = 0.5,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        downsample: Literal["conv", "maxpool"] = "conv",
        sppf: bool = True,
        sppf_pool_size: int = 5,
        norm: NormName = "batch",
        activation: ActivationName = "silu",
    ) -> None:
        """Build the backbone.

        Args:
            widths: Stem width followed by one output width per stage. The stem (a stride-2
                convolution) and every stage halve the resolution, so ``n`` widths give strides
                ``2 .. 2**n``; the last three stages are returned.
            depths: Bottlenecks in each stage's CSP block, one entry per stage (``len(widths) - 1``).
            expansion: Hidden width of each CSP block's halves, as a share of its output width.
            kernel_size: Kernel of the stem, of strided downsampling and of the bottlenecks.
            dilation: Dilation of each bottleneck's second convolution.
            groups: Groups of each bottleneck's second convolution (must divide the hidden widths).
            downsample: ``conv``: a stride-2 ``kernel_size`` convolution opens each stage;
                ``maxpool``: a 2x2 max-pool followed by a 1x1 convolution to the stage width.
            sppf: End with an :class:`SPPF` block on the last stage (same width).
            sppf_pool_size: Max-pool kernel of the SPPF block.
            norm: Normalisation after each convolution.
            activation: Activation after each normalisation.
        """
        super().__init__()
        widths, depths = list(widths), list(depths)
        if len(widths) < 4:
            raise ValueError(f"widths needs a stem and at least three stages (>= 4 entries), got {widths}")
        if len(depths) != len(widths) - 1:
            raise ValueError(f"depths needs one entry per stage ({len(widths) - 1}), got {depths}")
        if downsample not in ("conv", "maxpool"):
            raise ValueError(f"downsample must be 'conv' or 'maxpool', got {downsample!r}")
        conv = partial(ConvNormAct, norm=norm, activation=activation)
        stem = conv(3, widths[0], kernel_size, stride=2)
        stages = []
        for c_in, c_out, depth in zip(widths[:-1], widths[1:], depths):
            if downsample == "conv":
                down: nn.Module = conv(c_in, c_out, kernel_size, stride=2)
            else:
                down = nn.Sequential(nn.MaxPool2d(2, 2, ceil_mode=True), conv(c_in, c_out, 1))
            block = CSPBlock(c_out, c_out, depth, expansion, kernel_size, dilation, groups, norm, activation)
            stages.append(nn.Sequential(down, block))
        if sppf:
            stages[-1].append(SPPF(widths[-1], widths[-1], sppf_pool_size, norm, activation))
        self.set_stages(stem, stages, widths)
