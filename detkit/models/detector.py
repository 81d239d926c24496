"""The detector: backbone -> FPN -> FCOS head, with training loss and inference post-processing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from detkit.models.assigner import FCOSAssigner
from detkit.models.backbones import Backbone, FeatureInfo
from detkit.models.fpn import FPN
from detkit.models.head import FCOSHead, make_points
from detkit.models.layers import ActivationName, NormName
from detkit.models.losses import FCOSLoss
from detkit.models.postprocess import PostProcess
from detkit.types import Detections, Target

__all__ = ["Detector"]


class Detector(nn.Module):
    """FCOS-style anchor-free detector over any :class:`Backbone`.

    Images enter as ``FloatTensor[B, 3, H, W]`` in ``[0, 1]`` (H, W multiples of the coarsest
    stride); mean/std normalisation happens inside. Boxes are xyxy in input pixels throughout.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: Backbone,
        # FPN
        fpn_channels: int = 256,
        fpn_extra_levels: Literal[0, 1, 2] = 2,
        # Head
        head_convs: int = 4,
        head_kernel_size: int = 3,
        head_norm: NormName = "group",
        head_activation: ActivationName = "relu",
        quality: Literal["centerness", "iou"] = "centerness",
        prior_prob: float = 0.01,
        # Target assignment
        center_sampling_radius: float = 1.5,
        size_multiplier: float = 8.0,
        # Loss
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        box_weight: float = 1.0,
        quality_weight: float = 1.0,
        # Post-processing
        score_threshold: float = 0.05,
        topk_per_level: int = 1000,
        nms_iou: float = 0.6,
        max_detections: int = 100,
        # Input normalisation
        image_mean: Sequence[float] = (0.485, 0.456, 0.406),
        image_std: Sequence[float] = (0.229, 0.224, 0.225),
        # Memory layout
        channels_last: bool = True,
    ) -> None:
        """Build the detector.

        Args:
            num_classes: Number of foreground classes (contiguous labels ``0 .. num_classes-1``).
            backbone: Feature extractor; its ``feature_info`` sizes the FPN.
            fpn_channels: Channels of every pyramid level and of the head towers.
            fpn_extra_levels: Extra stride-2 levels above the backbone's coarsest (0, 1 or 2).
            head_convs: Convolutions in each head tower (classification and box).
            head_kernel_size: Kernel size of the head convolutions.
            head_norm: Normalisation in the head towers.
            head_activation: Activation in the head towers.
            quality: Quality branch target, ``"centerness"`` (FCOS) or ``"iou"`` of the predicted box.
            prior_prob: Initial foreground probability of the classifier.
            center_sampling_radius: Positives lie within ``radius * stride`` of a box centre (0 = anywhere inside).
            size_multiplier: Level of stride ``s`` regresses boxes with ``max(ltrb)`` in ``(s*m/2, s*m]``.
            focal_alpha: Focal-loss positive weight.
            focal_gamma: Focal-loss focusing exponent.
            box_weight: Weight of the GIoU loss.
            quality_weight: Weight of the quality BCE loss.
            score_threshold: Minimum detection score at inference.
            topk_per_level: Candidates kept per pyramid level before NMS.
            nms_iou: Class-aware NMS IoU threshold.
            max_detections: Detections kept per image.
            image_mean: Per-channel mean subtracted from ``[0, 1]`` images.
            image_std: Per-channel std images are divided by.
            channels_last: Keep weights and activations in NHWC (``torch.channels_last``), which
                oneDNN on CPUs and cuDNN with mixed precision run faster.
        """
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if len(image_mean) != 3 or len(image_std) != 3:
            raise ValueError(f"image_mean and image_std need 3 values, got {image_mean} and {image_std}")
        if not getattr(backbone, "feature_info", None):
            raise ValueError(f"backbone {type(backbone).__name__} declares no feature_info")
        self.num_classes = num_classes
        self.backbone = backbone
        self.fpn = FPN(backbone.feature_info, out_channels=fpn_channels, extra_levels=fpn_extra_levels)
        self.strides = [f.stride for f in self.fpn.feature_info]
        self.head = FCOSHead(
            fpn_channels,
            num_classes,
            num_convs=head_convs,
            kernel_size=head_kernel_size,
            norm=head_norm,
            activation=head_activation,
            prior_prob=prior_prob,
            quality=quality,
            strides=self.strides,
        )
        self.assigner = FCOSAssigner(center_sampling_radius=center_sampling_radius, size_multiplier=size_multiplier)
        self.criterion = FCOSLoss(
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
            box_weight=box_weight,
            quality_weight=quality_weight,
            quality=quality,
        )
        self.postprocess = PostProcess(
            score_threshold=score_threshold,
            topk_per_level=topk_per_level,
            nms_iou=nms_iou,
            max_detections=max_detections,
        )
        # (1, 3, 1, 1) buffers: follow .to(device) but stay out of checkpoints.
        mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("image_mean", mean, persistent=False)
        self.register_buffer("image_std", std, persistent=False)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """Channels and strides of the pyramid levels the head sees."""
        return self.fpn.feature_info

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> FPN maps ``(B, C, H/s, W/s)`` per level."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = (images - self.image_mean.to(images.dtype)) / self.image_std.to(images.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.fpn(self.backbone(x))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Raw head outputs for ``(B, 3, H, W)`` images in ``[0, 1]``.

        Returns:
            ``cls_logits (B, P, K)``, ``ltrb (B, P, 4)`` pixels, ``quality_logits (B, P)``,
            ``points (P, 2)`` and ``point_strides (P,)``.
        """
        features = self.feature_maps(images)
        cls_logits, ltrb, quality_logits = self.head(features)
        points, point_strides = make_points(
            [tuple(f.shape[-2:]) for f in features], self.strides, device=images.device, dtype=torch.float32
        )
        return {
            "cls_logits": cls_logits,
            "ltrb": ltrb,
            "quality_logits": quality_logits,
            "points": points,
            "point_strides": point_strides,
        }

    def loss(self, images: Tensor, targets: Sequence[Target]) -> dict[str, Tensor]:
        """Training losses for a batch.

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``.
            targets: ``B`` dicts with ``boxes [N, 4]`` xyxy input pixels, ``labels [N]`` and
                optionally ``iscrowd [N]`` (crowd boxes never become positives).

        Returns:
            ``{"loss", "loss_cls", "loss_box", "loss_quality"}`` scalar tensors.
        """
        if len(targets) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(targets)} targets")
        return self.loss_from_outputs(self(images), targets)

    def loss_from_outputs(self, out: dict[str, Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """Losses from the raw outputs of :meth:`forward` (see :meth:`loss`)."""
        device = out["cls_logits"].device
        boxes = [t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4) for t in targets]
        labels = [t["labels"].to(device=device, dtype=torch.int64).reshape(-1) for t in targets]
        keep = [
            (t["iscrowd"].to(device).reshape(-1) == 0) if "iscrowd" in t else torch.ones_like(lab, dtype=torch.bool)
            for t, lab in zip(targets, labels)
        ]
        gt_boxes = pad_sequence(boxes, batch_first=True)  # (B, M, 4)
        gt_labels = pad_sequence(labels, batch_first=True, padding_value=-1)  # (B, M)
        gt_valid = pad_sequence(keep, batch_first=True, padding_value=False)  # (B, M)
        assigned_labels, matched_boxes = self.assigner(
            out["points"], out["point_strides"], gt_boxes, gt_labels, gt_valid
        )
        return self.criterion(
            out["cls_logits"], out["ltrb"], out["quality_logits"], out["points"], assigned_labels, matched_boxes
        )

    @torch.no_grad()
    def loss_and_predict(self, images: Tensor, targets: Sequence[Target]) -> tuple[dict[str, Tensor], list[Detections]]:
        """Losses and detections (input pixels) from one forward pass, for validation."""
        out = self(images)
        detections = self.detections_from_outputs(out, (images.shape[-2], images.shape[-1]))
        return self.loss_from_outputs(out, targets), detections

    def detections_from_outputs(
        self, out: dict[str, Tensor], image_size: tuple[int, int], score_threshold: float | None = None
    ) -> list[Detections]:
        """Post-process the raw outputs of :meth:`forward` into detections in input pixels."""
        return self.postprocess(
            out["cls_logits"],
            out["ltrb"],
            out["quality_logits"],
            out["points"],
            out["point_strides"],
            image_size=image_size,
            score_threshold=score_threshold,
        )

    @torch.no_grad()
    def predict_batch(self, images: Tensor, score_threshold: float | None = None) -> list[Detections]:
        """Detections in input pixels for ``(B, 3, H, W)`` images in ``[0, 1]`` (runs in eval mode).

        Args:
            images: The batch.
            score_threshold: Overrides the configured score threshold when given.
        """
        was_training = self.training
        self.eval()
        try:
            out = self(images)
        finally:
            self.train(was_training)
        return self.detections_from_outputs(out, (images.shape[-2], images.shape[-1]), score_threshold)
