"""Feature pyramid network over backbone features, with optional extra coarse levels (P6, P7)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial
from typing import Literal

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelP6P7

from detkit.models.backbones import FeatureInfo
from detkit.models.layers import ActivationName, ConvNormAct, NormName
from detkit.models.necks.base import Neck

__all__ = ["FPN", "LastLevelP6"]


class LastLevelP6(ExtraFPNBlock):
    """One extra level: ``P6 = conv3x3/2(P5)`` (the single-level sibling of ``LastLevelP6P7``)."""

    def __init__(self, channels: int) -> None:
        """Build the block.

        Args:
            channels: Channels of P5 and of the produced P6.
        """
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, 2, 1)
        nn.init.kaiming_uniform_(self.p6.weight, a=1)
        nn.init.constant_(self.p6.bias, 0)

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        """Append P6 computed from the last pyramid level."""
        p.append(self.p6(p[-1]))
        names.append("p6")
        return p, names


class FPN(Neck):
    """Top-down FPN (torchvision) returning one map per input level plus ``extra_levels`` coarser ones,
    optionally followed by a bottom-up path (PAN, Liu et al. 2018).

    Built from the backbone's ``feature_info`` (kept as ``in_features``), it declares its outputs in
    ``feature_info``: ``out_channels`` each, strides continuing by factors of 2.

    With ``bottom_up``, fine detail travels back up the pyramid in a few convolutions:
    ``N_0 = P_0``, ``N_i = fuse_i(P_i + down_i(N_{i-1}))`` with ``down_i`` a stride-2 3x3 convolution
    and ``fuse_i`` a 3x3 one; extra levels are then computed from the last ``N``.
    """

    def __init__(
        self,
        in_features: Sequence[FeatureInfo],
        out_channels: int = 256,
        extra_levels: Literal[0, 1, 2] = 2,
        extra_from: Literal["output", "input"] = "output",
        bottom_up: bool = False,
        bottom_up_norm: NormName = "batch",
        bottom_up_activation: ActivationName = "silu",
    ) -> None:
        """Build the pyramid.

        Args:
            in_features: The backbone's ``feature_info`` (channels and stride of each input map,
                strides increasing).
            out_channels: Channels of every output level.
            extra_levels: Coarser levels appended after the last input, each a stride-2 3x3 conv
                of the previous output (0, 1 = P6, or 2 = P6 and P7 as in RetinaNet / FCOS).
            extra_from: What the first extra level is computed from: ``"output"`` the last pyramid
                output (P5, as torchvision's FCOS), ``"input"`` the last backbone map (C5, as the
                RetinaNet paper and torchvision's ``retinanet_resnet50_fpn_v2``; 2 extra levels only).
            bottom_up: Add the bottom-up path (PAN) after the top-down one.
            bottom_up_norm: Normalisation after each convolution of the bottom-up path.
            bottom_up_activation: Activation after each normalisation of the bottom-up path.
        """
        super().__init__()
        in_features = [FeatureInfo(*f) for f in in_features]
        if not in_features:
            raise ValueError("FPN needs at least one input level")
        strides = [f.stride for f in in_features]
        if any(b <= a for a, b in zip(strides, strides[1:])):
            raise ValueError(f"FPN input strides must increase, got {strides}")
        if extra_from not in ("output", "input"):
            raise ValueError(f"extra_from must be 'output' or 'input', got {extra_from!r}")
        if extra_from == "input" and extra_levels != 2:
            raise ValueError(f"extra_from='input' is implemented for extra_levels=2, got {extra_levels}")
        if extra_levels == 0:
            extra = None
        elif extra_levels == 1:
            extra = LastLevelP6(out_channels)
        elif extra_levels == 2:
            # torchvision computes P6 from C5 exactly when in_channels != out_channels.
            source = in_features[-1].channels if extra_from == "input" else out_channels
            if extra_from == "input" and source == out_channels:
                raise ValueError(
                    f"extra_from='input' needs the last backbone map's channels ({source}) to differ from "
                    f"out_channels ({out_channels}); torchvision's LastLevelP6P7 takes P5 otherwise"
                )
            extra = LastLevelP6P7(source, out_channels)
        else:
            raise ValueError(f"extra_levels must be 0, 1 or 2, got {extra_levels}")
        self.in_features = in_features
        channels = [f.channels for f in in_features]
        if bottom_up:
            # Extra levels come after the bottom-up path, from its last output.
            self.fpn = FeaturePyramidNetwork(channels, out_channels)
            self.extra = extra
            conv = partial(ConvNormAct, out_channels, out_channels, 3, norm=bottom_up_norm, activation=bottom_up_activation)
            self.down = nn.ModuleList(conv(stride=2) for _ in in_features[1:])
            self.fuse = nn.ModuleList(conv() for _ in in_features[1:])
        else:
            self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=extra)
        self.bottom_up = bottom_up
        self.feature_info = [FeatureInfo(out_channels, s) for s in strides]
        self.feature_info += [FeatureInfo(out_channels, strides[-1] * 2 ** (i + 1)) for i in range(extra_levels)]

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """Backbone maps ``(B, C_i, H_i, W_i)``, one per ``in_features`` entry -> maps matching ``feature_info``."""
        if len(features) != len(self.in_features):
            raise ValueError(f"FPN built for {len(self.in_features)} input levels, got {len(features)} feature maps")
        named = OrderedDict((str(i), f) for i, f in enumerate(features))
        levels = list(self.fpn(named).values())
        if not self.bottom_up:
            return levels
        outs = [levels[0]]
        for p, down, fuse in zip(levels[1:], self.down, self.fuse):
            outs.append(fuse(p + down(outs[-1])))
        if self.extra is not None:
            outs, _ = self.extra(outs, features, [str(i) for i in range(len(outs))])
        return outs
