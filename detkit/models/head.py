"""FCOS head: shared classification / box towers over pyramid levels, and the point grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.layers import ActivationName, ConvNormAct, NormName

__all__ = ["FCOSHead", "make_points"]


def make_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Centres of every feature cell in input pixels, levels concatenated in order.

    Within a level the order is row-major, matching ``(B, C, H, W) -> (B, HW, C)`` flattening.

    Args:
        feature_sizes: ``(H_l, W_l)`` per level.
        strides: Stride per level.
        device: Device of the outputs.
        dtype: Float dtype of ``points``.

    Returns:
        ``points [P, 2]`` with ``x = (j + 0.5) * stride``, ``y = (i + 0.5) * stride`` and
        ``point_strides [P]`` (same dtype), where ``P = sum_l H_l * W_l``.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(f"got {len(feature_sizes)} feature sizes but {len(strides)} strides")
    points, point_strides = [], []
    for (h, w), s in zip(feature_sizes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) * s
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
        points.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=-1))
        point_strides.append(torch.full((h * w,), float(s), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(point_strides)


class FCOSHead(nn.Module):
    """Anchor-free head: per point class logits, ltrb distances in pixels and a quality logit."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        num_convs: int = 4,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        norm: NormName = "group",
        activation: ActivationName = "relu",
        prior_prob: float = 0.01,
        quality: Literal["centerness", "iou"] = "centerness",
        strides: Sequence[int] = (8, 16, 32, 64, 128),
    ) -> None:
        """Build the head.

        Args:
            in_channels: Channels of every pyramid level (and of the towers).
            num_classes: Number of foreground classes ``K`` (no background logit).
            num_convs: ``ConvNormAct`` layers in each of the classification and box towers.
            kernel_size: Kernel size of the tower and prediction convolutions.
            dilation: Dilation of the tower convolutions.
            groups: Groups of the tower convolutions.
            norm: Normalisation in the towers (GroupNorm is the FCOS default).
            activation: Activation in the towers.
            prior_prob: Initial foreground probability, sets the class-logit bias.
            quality: What the quality logit is trained to predict (``"centerness"`` or the ``"iou"``
                of the predicted box); recorded here for the loss and post-processing.
            strides: Stride of each pyramid level; sets the number of per-level scales.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        if quality not in ("centerness", "iou"):
            raise ValueError(f"quality must be 'centerness' or 'iou', got {quality!r}")
        self.num_classes = num_classes
        self.quality = quality
        self.strides = [int(s) for s in strides]

        def tower() -> nn.Sequential:
            return nn.Sequential(
                *[
                    ConvNormAct(in_channels, in_channels, kernel_size, dilation=dilation, groups=groups,
                                norm=norm, activation=activation)
                    for _ in range(num_convs)
                ]
            )

        self.cls_tower = tower()
        self.box_tower = tower()
        pad = (kernel_size - 1) // 2
        self.cls_logits = nn.Conv2d(in_channels, num_classes, kernel_size, padding=pad)
        self.box_reg = nn.Conv2d(in_channels, 4, kernel_size, padding=pad)
        self.quality_logits = nn.Conv2d(in_channels, 1, kernel_size, padding=pad)
        # One learnable multiplier per level on the (stride-normalised) regression output.
        self.scales = nn.Parameter(torch.ones(len(self.strides)))

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1.0 - prior_prob) / prior_prob))

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Predict on every level and concatenate in level order.

        Args:
            features: Pyramid maps ``(B, C, H_l, W_l)``, one per entry of ``strides``.

        Returns:
            ``cls_logits (B, P, K)``, ``ltrb (B, P, 4)`` non-negative distances in input pixels,
            ``quality_logits (B, P)``, with ``P = sum_l H_l * W_l`` (row-major within a level).
        """
        if len(features) != len(self.strides):
            raise ValueError(f"FCOSHead built for {len(self.strides)} levels, got {len(features)} feature maps")
        all_cls, all_ltrb, all_quality = [], [], []
        for level, (x, stride) in enumerate(zip(features, self.strides)):
            cls_feat = self.cls_tower(x)
            box_feat = self.box_tower(x)
            # (B, K, H, W) -> (B, HW, K)
            all_cls.append(self.cls_logits(cls_feat).flatten(2).transpose(1, 2))
            # (B, 4, H, W) -> (B, HW, 4); relu keeps distances >= 0, stride maps them to pixels.
            reg = F.relu(self.box_reg(box_feat) * self.scales[level]) * stride
            all_ltrb.append(reg.flatten(2).transpose(1, 2))
            # (B, 1, H, W) -> (B, HW)
            all_quality.append(self.quality_logits(box_feat).flatten(1))
        return torch.cat(all_cls, dim=1), torch.cat(all_ltrb, dim=1), torch.cat(all_quality, dim=1)
