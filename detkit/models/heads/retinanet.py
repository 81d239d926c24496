"""RetinaNet head: shared classification / box towers predicting for A anchors at every cell of every level.

The head owns its :class:`AnchorGrid` (where the anchors are), :class:`MaxIoUAssigner` (which box
each anchor learns), :class:`RetinaNetLoss` (focal + GIoU) and :class:`DenseDecoder` (top-k, NMS on
``sigmoid(cls)``), each passed in as an object; the defaults are torchvision's
``retinanet_resnet50_fpn_v2``, whose weights :mod:`detkit.models.torchvision_import` loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image

from detkit.models.backbones import FeatureInfo
from detkit.models.heads.anchors import AnchorGrid
from detkit.models.heads.base import ComposedDenseHead, batch_targets, init_dense_convs
from detkit.models.heads.dense_decoder import DenseDecoder
from detkit.models.heads.iou_assigner import MaxIoUAssigner
from detkit.models.heads.retinanet_loss import RetinaNetLoss
from detkit.models.layers import ActivationName, ConvNormAct, NormName
from detkit.ops.boxes import decode_deltas
from detkit.types import Target

__all__ = ["RetinaNetHead"]


class RetinaNetHead(ComposedDenseHead):
    """Anchor-based head: per anchor class logits and box deltas relative to the anchor.

    ``forward`` returns ``cls_logits (B, N, K)``, ``box_deltas (B, N, 4)`` (``dx, dy, dw, dh``,
    see :func:`~detkit.ops.boxes.decode_deltas`), ``anchors (N, 4)`` xyxy in input pixels,
    ``points (N, 2)`` (the anchors' centres) and ``point_strides (N,)``, with
    ``N = A * sum_l H_l * W_l`` ordered level, row, column, anchor: the ``N`` positions of
    :meth:`predict`'s ``point_index`` are anchors.
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
        # Anchors, training and decoding
        anchors: AnchorGrid | None = None,
        assigner: MaxIoUAssigner | None = None,
        loss: RetinaNetLoss | None = None,
        decoder: DenseDecoder | None = None,
    ) -> None:
        """Build the head.

        Args:
            in_features: The neck's ``feature_info``; every level must have the same channels.
            num_classes: Number of foreground classes ``K`` (no background logit).
            num_convs: ``ConvNormAct`` layers in each of the classification and box towers.
            kernel_size: Kernel size of the tower and prediction convolutions.
            dilation: Dilation of the tower convolutions.
            groups: Groups of the tower convolutions.
            norm: Normalisation in the towers: ``"group"`` (32 groups, ``retinanet_resnet50_fpn_v2``;
                the convolutions have no bias) or ``"none"`` (the original RetinaNet, with bias).
            activation: Activation in the towers.
            prior_prob: Initial foreground probability, sets the class-logit bias.
            anchors: The anchors at each cell (default ``AnchorGrid()``: 3 sizes x 3 ratios).
            assigner: Target assignment (default ``MaxIoUAssigner()``: IoU 0.5 / 0.4 with low-quality matches).
            loss: Training loss (default ``RetinaNetLoss()``: focal 0.25 / 2 and GIoU).
            decoder: Inference decoding (default torchvision's RetinaNet: score > 0.05, top 1000
                per level, NMS IoU 0.5, 300 detections).
        """
        super().__init__(in_features, num_classes)
        channels = {f.channels for f in self.in_features}
        if len(channels) != 1:
            raise ValueError(f"RetinaNetHead needs the same channels on every level, got {self.in_features}")
        in_channels = channels.pop()
        self.anchors = anchors if anchors is not None else AnchorGrid()
        num_anchors = self.anchors.num_per_location

        def tower() -> nn.Sequential:
            conv = partial(ConvNormAct, in_channels, in_channels, kernel_size, dilation=dilation, groups=groups,
                           norm=norm, activation=activation)  # fmt: skip
            return nn.Sequential(*[conv() for _ in range(num_convs)])

        self.cls_tower = tower()
        self.box_tower = tower()
        pad = (kernel_size - 1) // 2
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, kernel_size, padding=pad)
        self.box_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size, padding=pad)

        init_dense_convs(self, [self.cls_logits], prior_prob)
        self.set_parts(
            assigner,
            loss,
            decoder,
            default_assigner=MaxIoUAssigner,
            default_loss=RetinaNetLoss,
            default_decoder=partial(DenseDecoder, score_threshold=0.05, nms_iou=0.5, max_detections=300),
        )

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Predict on every level and concatenate in level order.

        Args:
            features: Pyramid maps ``(B, C, H_l, W_l)``, one per entry of ``in_features``.

        Returns:
            ``cls_logits``, ``box_deltas``, ``anchors``, ``points`` and ``point_strides`` (see the
            class docstring).
        """
        self.check_levels(features)
        all_cls, all_deltas = [], []
        for x in features:
            batch, _, height, width = x.shape
            # (B, A * K, H, W) -> (B, A, K, H, W) -> (B, H, W, A, K) -> (B, HWA, K)
            cls = self.cls_logits(self.cls_tower(x)).view(batch, -1, self.num_classes, height, width)
            all_cls.append(cls.permute(0, 3, 4, 1, 2).reshape(batch, -1, self.num_classes))
            # (B, A * 4, H, W) -> (B, HWA, 4)
            deltas = self.box_reg(self.box_tower(x)).view(batch, -1, 4, height, width)
            all_deltas.append(deltas.permute(0, 3, 4, 1, 2).reshape(batch, -1, 4))
        anchors, centres, strides = self.anchors(
            [tuple(f.shape[-2:]) for f in features], self.strides, device=features[0].device
        )
        return {
            "cls_logits": torch.cat(all_cls, dim=1),
            "box_deltas": torch.cat(all_deltas, dim=1),
            "anchors": anchors,
            "points": centres,
            "point_strides": strides,
        }

    def loss(self, outputs: dict[str, Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """Assign targets to anchors and compute the losses (see :meth:`DenseHead.loss`).

        Returns:
            ``{"loss": total, "loss_cls", "loss_box"}`` (see :class:`RetinaNetLoss`).
        """
        cls_logits = outputs["cls_logits"]
        gt_boxes, gt_labels, gt_valid = batch_targets(targets, cls_logits.device, num_images=cls_logits.shape[0])
        assigned = self.assigner(outputs["anchors"], gt_boxes, gt_labels, gt_valid)
        return self.criterion(cls_logits, outputs["box_deltas"], outputs["anchors"], assigned)

    def scores_and_boxes(self, outputs: dict[str, Tensor], image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``sigmoid(cls) (B, N, K)`` and the anchors' decoded boxes ``(B, N, 4)`` clipped to ``image_size``."""
        scores = torch.sigmoid(outputs["cls_logits"].float())
        boxes = decode_deltas(outputs["anchors"][None].float(), outputs["box_deltas"].float())
        return scores, clip_boxes_to_image(boxes, image_size)

    def prediction_layers(self) -> list[nn.Module]:
        """Class and box prediction convolutions (see :meth:`DenseHead.prediction_layers`)."""
        return [self.cls_logits, self.box_reg]
