"""Task-aligned anchor-free head (TOOD / YOLOv8 family): decoupled branches, boxes as distributions.

Per point the head predicts class logits and, for each side of the box, a distribution over
``reg_max`` bins of one stride (distribution focal loss, GFL); the box is the distributions'
expectation, ``ltrb = stride * sum_i softmax(logits)_i * i``. The head owns its
:class:`TaskAlignedAssigner` (which points learn which box, from the current predictions),
:class:`TaskAlignedLoss` and :class:`DenseDecoder` (on scores ``sigmoid(cls)``), see
:class:`~detkit.models.heads.base.ComposedDenseHead`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from detkit.models.backbones import FeatureInfo
from detkit.models.heads.base import ComposedDenseHead, batch_targets, init_dense_convs
from detkit.models.heads.dense_decoder import DenseDecoder
from detkit.models.heads.tal_assigner import TaskAlignedAssigner
from detkit.models.heads.tal_loss import TaskAlignedLoss
from detkit.models.layers import ActivationName, ConvNormAct, NormName
from detkit.ops.boxes import decode_ltrb
from detkit.types import Target

__all__ = ["TaskAlignedHead", "expected_distance", "geometric_bin_logits"]


def expected_distance(dist_logits: Tensor) -> Tensor:
    """``[..., R]`` logits over the bins ``0 .. R-1`` -> ``[...]`` expected bin (softmax-weighted mean)."""
    bins = torch.arange(dist_logits.shape[-1], device=dist_logits.device, dtype=torch.float32)
    return (torch.softmax(dist_logits.float(), dim=-1) * bins).sum(dim=-1)


def geometric_bin_logits(num_bins: int, mean: float) -> Tensor:
    """Logits ``i * log q`` over ``num_bins`` bins whose :func:`expected_distance` is ``mean``.

    A geometric prior (``q`` found by bisection, ``q = 1`` is uniform) for the initial box: every
    point starts predicting a box of ``2 * mean`` strides, so each level starts with boxes of its
    own scale and the task-aligned assigner spreads objects over the levels from the first step.
    """
    if not 0.0 < mean < num_bins - 1:
        raise ValueError(f"mean must be in (0, {num_bins - 1}), got {mean}")
    bins = torch.arange(num_bins, dtype=torch.float64)
    low, high = -50.0, 50.0  # log q
    for _ in range(100):
        log_q = (low + high) / 2
        if expected_distance(bins * log_q).item() < mean:
            low = log_q
        else:
            high = log_q
    return (bins * (low + high) / 2).float()


class TaskAlignedHead(ComposedDenseHead):
    """Anchor-free head with decoupled classification and box branches and DFL box regression.

    ``forward`` returns ``cls_logits (B, P, K)``, ``dist_logits (B, P, 4, R)`` (per side l, t, r, b,
    logits over ``R = reg_max`` bins of one stride), ``ltrb (B, P, 4)`` the expected distances in
    input pixels, ``points (P, 2)`` (x, y cell centres in input pixels) and ``point_strides (P,)``,
    with ``P = sum_l H_l * W_l`` (levels concatenated, row-major within a level, see
    :func:`~detkit.models.heads.base.make_points`).
    """

    def __init__(
        self,
        in_features: Sequence[FeatureInfo],
        num_classes: int,
        # Branches
        num_convs: int = 2,
        channels: int | None = None,
        share_convs: bool = True,
        kernel_size: int = 3,
        norm: NormName = "group",
        activation: ActivationName = "silu",
        # Predictions
        reg_max: int = 16,
        prior_prob: float = 0.01,
        prior_distance: float = 1.5,
        # Training and decoding
        assigner: TaskAlignedAssigner | None = None,
        loss: TaskAlignedLoss | None = None,
        decoder: DenseDecoder | None = None,
    ) -> None:
        """Build the head.

        Args:
            in_features: The neck's ``feature_info``; with ``share_convs`` every level must have
                the same channels.
            num_classes: Number of foreground classes ``K`` (no background logit).
            num_convs: ``ConvNormAct`` layers in each of the classification and box branches.
            channels: Width of the branches (default: the input channels of the level).
            share_convs: One set of branches and prediction layers for every level (FCOS / TOOD),
                or one per level (YOLOv8; BatchNorm then keeps per-level statistics).
            kernel_size: Kernel size of the branch convolutions (predictions are 1x1).
            norm: Normalisation in the branches, ``"group"`` or ``"batch"`` (or ``"none"``).
            activation: Activation in the branches.
            reg_max: Bins of each side's distance distribution; distances reach ``reg_max - 1``
                strides (16 bins reach 15 strides, 480 px on a stride-32 level).
            prior_prob: Initial foreground probability, sets the class-logit bias.
            prior_distance: Initial expected distance of each side, in strides, set through the box
                bins' bias (see :func:`geometric_bin_logits`). Small boxes at the start let the
                assigner, which reads the predicted boxes, match each object to the level of its
                size; uniform bins (``(reg_max - 1) / 2``, YOLOv8's start) train far slower on
                small data.
            assigner: Target assignment (default ``TaskAlignedAssigner()``: top 10, alpha 0.5, beta 6).
            loss: Training loss (default ``TaskAlignedLoss()``: BCE towards the alignment 0.5,
                GIoU 7.5, DFL 1.5, YOLOv8's weights).
            decoder: Inference decoding (default ``DenseDecoder()``: score > 0.05, top 1000 per
                level, NMS IoU 0.6, 100 detections; scores are ``sigmoid(cls)``).
        """
        super().__init__(in_features, num_classes)
        in_channels = [f.channels for f in self.in_features]
        if share_convs and len(set(in_channels)) != 1:
            raise ValueError(
                f"share_convs needs the same channels on every level, got {self.in_features}; "
                "use share_convs=False"
            )
        if num_convs < 0:
            raise ValueError(f"num_convs must be >= 0, got {num_convs}")
        if channels is not None and channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if reg_max < 2:
            raise ValueError(f"reg_max must be >= 2, got {reg_max}")
        self.reg_max = reg_max
        self.share_convs = share_convs

        def branch(c_in: int) -> nn.Sequential:
            widths = [c_in] + [channels or c_in] * num_convs
            return nn.Sequential(
                *[
                    ConvNormAct(a, b, kernel_size, norm=norm, activation=activation)
                    for a, b in zip(widths[:-1], widths[1:])
                ]
            )

        # One entry for every level, or a single shared one.
        level_channels = in_channels[:1] if share_convs else in_channels
        self.cls_branches = nn.ModuleList(branch(c) for c in level_channels)
        self.box_branches = nn.ModuleList(branch(c) for c in level_channels)
        out_channels = [(channels or c) if num_convs else c for c in level_channels]
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in out_channels)
        self.box_preds = nn.ModuleList(nn.Conv2d(c, 4 * reg_max, 1) for c in out_channels)

        init_dense_convs(self, self.cls_preds, prior_prob)
        box_bias = geometric_bin_logits(reg_max, prior_distance).repeat(4)  # sides l, t, r, b
        with torch.no_grad():
            for box_pred in self.box_preds:
                box_pred.bias.copy_(box_bias)
        self.set_parts(assigner, loss, decoder, default_assigner=TaskAlignedAssigner, default_loss=TaskAlignedLoss)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Predict on every level and concatenate in level order.

        Args:
            features: Pyramid maps ``(B, C_l, H_l, W_l)``, one per entry of ``in_features``.

        Returns:
            ``cls_logits``, ``dist_logits``, ``ltrb``, ``points`` and ``point_strides`` (see the
            class docstring).
        """
        self.check_levels(features)
        all_cls, all_dist, all_ltrb = [], [], []
        for level, (x, stride) in enumerate(zip(features, self.strides)):
            i = 0 if self.share_convs else level
            batch, _, height, width = x.shape
            # (B, K, H, W) -> (B, HW, K)
            all_cls.append(self.cls_preds[i](self.cls_branches[i](x)).flatten(2).transpose(1, 2))
            # (B, 4R, H, W) -> (B, HW, 4R) -> (B, HW, 4, R), sides l, t, r, b
            dist = self.box_preds[i](self.box_branches[i](x)).flatten(2).transpose(1, 2)
            dist = dist.reshape(batch, height * width, 4, self.reg_max)
            all_dist.append(dist)
            all_ltrb.append(expected_distance(dist) * stride)  # (B, HW, 4) pixels
        return self.dense_outputs(features, cls_logits=all_cls, dist_logits=all_dist, ltrb=all_ltrb)

    def loss(self, outputs: dict[str, Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """Assign targets from the current predictions and compute the losses (see :meth:`DenseHead.loss`).

        Returns:
            ``{"loss": total, "loss_cls", "loss_box", "loss_dfl"}`` (see :class:`TaskAlignedLoss`).
        """
        cls_logits, ltrb = outputs["cls_logits"], outputs["ltrb"]
        gt_boxes, gt_labels, gt_valid = batch_targets(targets, cls_logits.device, num_images=cls_logits.shape[0])
        points, point_strides = outputs["points"], outputs["point_strides"]
        scores = torch.sigmoid(cls_logits.detach().float())  # (B, P, K)
        pred_boxes = decode_ltrb(points[None], ltrb.detach().float())  # (B, P, 4)
        assigned = self.assigner(scores, pred_boxes, points, gt_boxes, gt_labels, gt_valid)
        return self.criterion(cls_logits, outputs["dist_logits"], ltrb, points, point_strides, assigned)

    def prediction_layers(self) -> list[nn.Module]:
        """Class and box-distribution prediction convolutions (see :meth:`DenseHead.prediction_layers`)."""
        return [*self.cls_preds, *self.box_preds]
