"""FCOS head: shared classification / box towers over pyramid levels, trained and decoded per point.

The head owns its :class:`FCOSAssigner` (which box each point regresses), :class:`FCOSLoss`
(focal + GIoU + quality) and :class:`DenseDecoder` (top-k, NMS, on scores
``sqrt(sigmoid(cls) * sigmoid(quality))``); each is passed in as an object and defaults to the FCOS
paper's settings (see :class:`~detkit.models.heads.base.ComposedDenseHead`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones import FeatureInfo
from detkit.models.heads.base import ComposedDenseHead, batch_targets, init_dense_convs
from detkit.models.heads.dense_decoder import DenseDecoder
from detkit.models.heads.fcos_assigner import FCOSAssigner
from detkit.models.heads.fcos_loss import FCOSLoss
from detkit.models.layers import ActivationName, ConvNormAct, NormName
from detkit.types import Target

__all__ = ["FCOSHead"]


class FCOSHead(ComposedDenseHead):
    """Anchor-free head: per point class logits, ltrb distances in pixels and a quality logit.

    ``forward`` returns ``cls_logits (B, P, K)``, ``ltrb (B, P, 4)`` non-negative distances in
    input pixels, ``quality_logits (B, P)``, ``points (P, 2)`` (x, y cell centres in input pixels)
    and ``point_strides (P,)``, with ``P = sum_l H_l * W_l`` (levels concatenated, row-major
    within a level, see :func:`~detkit.models.heads.base.make_points`).
    """

    def __init__(
        self,
        in_features: Sequence[FeatureInfo],
        num_classes: int,
        # Towers
        num_convs: int = 4,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        norm: NormName = "group",
        activation: ActivationName = "relu",
        prior_prob: float = 0.01,
        tower_bias: bool = False,
        point_offset: float = 0.5,
        # Training and decoding
        assigner: FCOSAssigner | None = None,
        loss: FCOSLoss | None = None,
        decoder: DenseDecoder | None = None,
    ) -> None:
        """Build the head.

        Args:
            in_features: The neck's ``feature_info``; every level must have the same channels
                (the towers are shared across levels and keep that width).
            num_classes: Number of foreground classes ``K`` (no background logit).
            num_convs: ``ConvNormAct`` layers in each of the classification and box towers.
            kernel_size: Kernel size of the tower and prediction convolutions.
            dilation: Dilation of the tower convolutions.
            groups: Groups of the tower convolutions.
            norm: Normalisation in the towers (GroupNorm is the FCOS default).
            activation: Activation in the towers.
            prior_prob: Initial foreground probability, sets the class-logit bias.
            tower_bias: Give the tower convolutions a bias before their norm (torchvision's FCOS
                has one; with GroupNorm it is not cancelled, so imported weights need it).
            point_offset: Where each point sits in its cell, in cells: ``0.5`` the centre,
                ``0.0`` the top-left corner (torchvision's FCOS, whose anchors sit there).
            assigner: Target assignment (default ``FCOSAssigner()``: centre sampling 1.5,
                size multiplier 8).
            loss: Training loss, including what the quality logit learns (default ``FCOSLoss()``:
                focal 0.25 / 2, GIoU and centre-ness, unit weights).
            decoder: Inference decoding (default ``DenseDecoder()``: score > 0.05, top 1000 per
                level, NMS IoU 0.6, 100 detections).
        """
        super().__init__(in_features, num_classes)
        channels = {f.channels for f in self.in_features}
        if len(channels) != 1:
            raise ValueError(f"FCOSHead needs the same channels on every level, got {self.in_features}")
        in_channels = channels.pop()

        def tower() -> nn.Sequential:
            return nn.Sequential(
                *[
                    ConvNormAct(in_channels, in_channels, kernel_size, dilation=dilation, groups=groups,
                                norm=norm, activation=activation, bias=tower_bias or None)
                    for _ in range(num_convs)
                ]
            )

        self.point_offset = point_offset
        self.cls_tower = tower()
        self.box_tower = tower()
        pad = (kernel_size - 1) // 2
        self.cls_logits = nn.Conv2d(in_channels, num_classes, kernel_size, padding=pad)
        self.box_reg = nn.Conv2d(in_channels, 4, kernel_size, padding=pad)
        self.quality_logits = nn.Conv2d(in_channels, 1, kernel_size, padding=pad)
        # One learnable multiplier per level on the (stride-normalised) regression output.
        self.scales = nn.Parameter(torch.ones(len(self.in_features)))

        init_dense_convs(self, [self.cls_logits], prior_prob)
        self.set_parts(assigner, loss, decoder, default_assigner=FCOSAssigner, default_loss=FCOSLoss)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Predict on every level and concatenate in level order.

        Args:
            features: Pyramid maps ``(B, C, H_l, W_l)``, one per entry of ``in_features``.

        Returns:
            ``cls_logits``, ``ltrb``, ``quality_logits``, ``points`` and ``point_strides`` (see the
            class docstring).
        """
        self.check_levels(features)
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
        return self.dense_outputs(features, cls_logits=all_cls, ltrb=all_ltrb, quality_logits=all_quality)

    def loss(self, outputs: dict[str, Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """Assign targets to points and compute the losses (see :meth:`DenseHead.loss`).

        Returns:
            ``{"loss": total, "loss_cls", "loss_box", "loss_quality"}`` (see :class:`FCOSLoss`).
        """
        cls_logits = outputs["cls_logits"]
        gt_boxes, gt_labels, gt_valid = batch_targets(targets, cls_logits.device, num_images=cls_logits.shape[0])
        points = outputs["points"]
        assigned = self.assigner(points, outputs["point_strides"], gt_boxes, gt_labels, gt_valid)
        return self.criterion(cls_logits, outputs["ltrb"], outputs["quality_logits"], points, assigned)

    def prediction_layers(self) -> list[nn.Module]:
        """Class, box and quality prediction convolutions (see :meth:`DenseHead.prediction_layers`)."""
        return [self.cls_logits, self.box_reg, self.quality_logits]
