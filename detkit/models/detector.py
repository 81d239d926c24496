"""The detector: backbone -> neck -> dense head, with input normalisation and padding to the largest stride."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detkit.models.backbones import Backbone, FeatureInfo
from detkit.models.heads.base import DenseHead
from detkit.models.necks.base import Neck
from detkit.models.reshape import reshape_layers
from detkit.types import Detections, Target

__all__ = ["Detector"]


class Detector(nn.Module):
    """A dense detector composed of a backbone, a neck and a head, each passed in.

    Images enter as ``FloatTensor[B, 3, H, W]`` in ``[0, 1]``; they are zero-padded bottom/right to
    a multiple of :attr:`stride` when needed, then mean/std normalised. Boxes are xyxy in input
    pixels throughout; detections are clipped to the unpadded ``(H, W)``.

    In Python, give the neck and head as factories, e.g.
    ``Detector(3, PlainConvBackbone(), neck=partial(FPN, out_channels=64), head=partial(FCOSHead, num_convs=2))``;
    in YAML, as ``class_path`` blocks without their first arguments.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: Backbone,
        neck: Callable[[Sequence[FeatureInfo]], Neck],
        head: Callable[[Sequence[FeatureInfo], int], DenseHead],
        # Input normalisation
        image_mean: Sequence[float] = (0.485, 0.456, 0.406),
        image_std: Sequence[float] = (0.229, 0.224, 0.225),
        # Input size and memory layout
        pad_to_stride: bool = True,
        channels_last: bool = True,
        # Structured pruning
        pruned: dict[str, list[int]] | None = None,
    ) -> None:
        """Build the detector.

        Args:
            num_classes: Number of foreground classes (contiguous labels ``0 .. num_classes-1``).
            backbone: Feature extractor; its ``feature_info`` builds the neck.
            neck: Builds the neck from the backbone's ``feature_info`` (e.g. :class:`~detkit.models.FPN`);
                a :class:`~detkit.models.Neck`, declaring its outputs in its own ``feature_info``.
            head: Builds the head from the neck's ``feature_info`` and ``num_classes`` (e.g.
                :class:`~detkit.models.FCOSHead`); a :class:`~detkit.models.DenseHead`.
            image_mean: Per-channel mean subtracted from ``[0, 1]`` images.
            image_std: Per-channel std images are divided by.
            pad_to_stride: Zero-pad images whose height or width is not a multiple of the largest
                stride (no-op when aligned). ``False`` runs them as they are (maps of ``ceil(H / s)``
                cells, as format-1 checkpoints did).
            channels_last: Keep weights and activations in NHWC (``torch.channels_last``), which
                oneDNN on CPUs and cuDNN with mixed precision run faster.
            pruned: Channel shapes of the layers that ``detkit prune`` made narrower, by module
                name (see :func:`~detkit.models.reshape.layer_shapes`); the pruned checkpoint's
                config carries it, so the same architecture is built to load or fine-tune it.
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
        self.neck = neck(list(backbone.feature_info))
        if not isinstance(self.neck, Neck) or not getattr(self.neck, "feature_info", None):
            raise ValueError(f"neck must be a Neck that declares feature_info, got {type(self.neck).__name__}")
        self.head = head(list(self.neck.feature_info), num_classes)
        if not isinstance(self.head, DenseHead):
            raise ValueError(f"head must be a DenseHead, got {type(self.head).__name__}")
        # (1, 3, 1, 1) buffers: follow .to(device) but stay out of checkpoints.
        mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("image_mean", mean, persistent=False)
        self.register_buffer("image_std", std, persistent=False)
        self.pad_to_stride = pad_to_stride
        self.channels_last = channels_last
        if pruned:
            self._apply_pruned_shapes(pruned)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _apply_pruned_shapes(self, pruned: dict[str, list[int]]) -> None:
        """Rebuild the layers named in ``pruned`` narrower; ``feature_info`` then reports the pruned widths."""
        reshape_layers(self, pruned)
        side = self.stride * 2
        was_training = self.training
        self.eval()  # the probe must not move BatchNorm statistics
        with torch.no_grad():
            maps = self.backbone(torch.zeros(1, 3, side, side, device=self.image_mean.device))
            self.backbone.feature_info = [FeatureInfo(m.shape[1], f.stride) for m, f in zip(maps, self.backbone.feature_info)]
            levels = self.neck(maps)
            self.neck.feature_info = [FeatureInfo(m.shape[1], f.stride) for m, f in zip(levels, self.neck.feature_info)]
        self.train(was_training)

    @property
    def feature_info(self) -> list[FeatureInfo]:
        """Channels and strides of the pyramid levels the head sees (the neck's outputs)."""
        return list(self.neck.feature_info)

    @property
    def strides(self) -> list[int]:
        """Stride of each pyramid level, increasing."""
        return [f.stride for f in self.neck.feature_info]

    @property
    def stride(self) -> int:
        """The largest stride: inputs whose sides are multiples of it need no padding."""
        return max(self.strides)

    def pad(self, images: Tensor) -> Tensor:
        """Zero-pad ``(B, 3, H, W)`` bottom/right to multiples of :attr:`stride` (no-op when aligned)."""
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % self.stride, -width % self.stride
        if not self.pad_to_stride or (pad_h == 0 and pad_w == 0):
            return images
        return F.pad(images, (0, pad_w, 0, pad_h))

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` images in ``[0, 1]`` -> neck maps ``(B, C, H'/s, W'/s)`` per level.

        ``H', W'`` are the padded sizes (see :meth:`pad`).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = self.pad(images)
        x = (x - self.image_mean.to(x.dtype)) / self.image_std.to(x.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.neck(self.backbone(x))

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Raw head outputs for ``(B, 3, H, W)`` images in ``[0, 1]`` (keys depend on the head)."""
        return self.head(self.feature_maps(images))

    def loss(self, images: Tensor, targets: Sequence[Target]) -> dict[str, Tensor]:
        """Training losses for a batch.

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``.
            targets: ``B`` dicts with ``boxes [N, 4]`` xyxy input pixels, ``labels [N]`` and
                optionally ``iscrowd [N]`` (crowd boxes never become positives).

        Returns:
            The head's losses, ``"loss"`` the total (FCOS: ``loss_cls``, ``loss_box``, ``loss_quality``).
        """
        if len(targets) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(targets)} targets")
        return self.head.loss(self(images), targets)

    @torch.no_grad()
    def loss_and_predict(self, images: Tensor, targets: Sequence[Target]) -> tuple[dict[str, Tensor], list[Detections]]:
        """Losses and detections (input pixels) from one forward pass, for validation."""
        if len(targets) != images.shape[0]:
            raise ValueError(f"got {images.shape[0]} images but {len(targets)} targets")
        outputs = self(images)
        detections = self.head.predict(outputs, (images.shape[-2], images.shape[-1]))
        return self.head.loss(outputs, targets), detections

    @torch.no_grad()
    def predict_batch(self, images: Tensor, score_threshold: float | None = None) -> list[Detections]:
        """Detections in input pixels for ``(B, 3, H, W)`` images in ``[0, 1]`` (runs in eval mode).

        Args:
            images: The batch.
            score_threshold: Overrides the head's configured score threshold when given.

        Returns:
            One :class:`~detkit.types.Detections` per image, boxes clipped to ``(H, W)``, with the
            ``point_index`` and ``level`` each detection came from.
        """
        was_training = self.training
        self.eval()
        try:
            outputs = self(images)
        finally:
            self.train(was_training)
        return self.head.predict(outputs, (images.shape[-2], images.shape[-1]), score_threshold)
