"""The dense-head interface every detection head implements, and helpers dense heads share.

A head turns the neck's pyramid maps into raw per-point outputs (``forward``), scores them against
targets (``loss``) and decodes them into detections (``predict``). It owns whatever assigns targets,
computes losses and decodes boxes, so the :class:`~detkit.models.Detector` never reads its outputs.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from detkit.models.backbones import FeatureInfo
from detkit.types import Detections, Target

__all__ = ["DenseHead", "batch_targets", "distributed_mean", "make_points"]


class DenseHead(nn.Module, abc.ABC):
    """Base class of detection heads that predict on every cell of every pyramid level.

    Subclasses are built as ``Head(in_features, num_classes, **options)`` (what
    :class:`~detkit.models.Detector` calls) and implement the three methods below. Boxes are xyxy in
    input pixels throughout (see :mod:`detkit.types`).

    Attributes:
        in_features: The neck's ``feature_info``: channels and stride of each input level.
        num_classes: Number of foreground classes ``K`` (labels ``0 .. K-1``).
    """

    in_features: list[FeatureInfo]
    num_classes: int

    def __init__(self, in_features: Sequence[FeatureInfo], num_classes: int) -> None:
        """Record and check the inputs.

        Args:
            in_features: Channels and stride of each pyramid level, strides increasing.
            num_classes: Number of foreground classes.
        """
        super().__init__()
        in_features = [FeatureInfo(*f) for f in in_features]
        if not in_features:
            raise ValueError(f"{type(self).__name__} needs at least one input level")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_features = in_features
        self.num_classes = num_classes

    @property
    def strides(self) -> list[int]:
        """Stride of each input level."""
        return [f.stride for f in self.in_features]

    def dense_outputs(self, features: list[Tensor], **per_level: list[Tensor]) -> dict[str, Tensor]:
        """The outputs dict of :meth:`forward`: each ``name=[(B, HW_l, ...) per level]`` concatenated
        over levels to ``(B, P, ...)``, plus ``points (P, 2)`` and ``point_strides (P,)`` of the
        ``features``' grids (:func:`make_points`)."""
        points, point_strides = make_points(
            [tuple(f.shape[-2:]) for f in features], self.strides, device=features[0].device, dtype=torch.float32
        )
        outputs = {name: torch.cat(levels, dim=1) for name, levels in per_level.items()}
        return {**outputs, "points": points, "point_strides": point_strides}

    @abc.abstractmethod
    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Raw outputs for pyramid maps ``(B, C_l, H_l, W_l)``, one per ``in_features`` entry.

        Returns:
            A dict of tensors that only this head's :meth:`loss` and :meth:`predict` read; dense
            heads put their ``P`` points (levels concatenated, row-major within a level) on dim 1.
        """

    @abc.abstractmethod
    def loss(self, outputs: dict[str, Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """Training losses of the outputs of :meth:`forward` against ``B`` targets.

        Args:
            outputs: What :meth:`forward` returned for the batch.
            targets: One dict per image with ``boxes [N, 4]`` (input pixels), ``labels [N]`` and
                optionally ``iscrowd [N]`` (crowd boxes must never make positives).

        Returns:
            Scalar tensors; ``"loss"`` is the total that is optimised, other keys are logged.
        """

    @abc.abstractmethod
    def predict(
        self, outputs: dict[str, Tensor], image_size: tuple[int, int], score_threshold: float | None = None
    ) -> list[Detections]:
        """Decode the outputs of :meth:`forward` into one :class:`~detkit.types.Detections` per image.

        Args:
            outputs: What :meth:`forward` returned for the batch.
            image_size: ``(height, width)`` boxes are clipped to.
            score_threshold: Overrides the head's configured threshold when given.

        Returns:
            Per image ``boxes``, ``scores`` (descending), ``labels`` and, for each detection, the
            ``point_index`` (into the ``P`` points) and ``level`` (index into ``in_features``) it
            came from.
        """

    def prediction_layers(self) -> list[nn.Module]:
        """The layers whose outputs are the task's (class logits, box outputs): pruning keeps their
        output channels. Heads that can be pruned override this."""
        raise NotImplementedError(f"{type(self).__name__} does not name its prediction layers, so it cannot be pruned")

    def predict_padded(
        self,
        outputs: dict[str, Tensor],
        image_size: tuple[int, int],
        level_sizes: list[int],
        score_threshold: float | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The detections of :meth:`predict` as fixed-shape tensors, for exported graphs.

        Args:
            outputs, image_size, score_threshold: As :meth:`predict`.
            level_sizes: Points per level (``H_l * W_l``), fixed for a fixed input size.

        Returns:
            ``boxes (B, D, 4)``, ``scores (B, D)``, ``labels (B, D)`` and ``num_detections (B,)``
            (see :meth:`~detkit.models.FCOSDecoder.padded`). Heads that can be exported override this.
        """
        raise NotImplementedError(f"{type(self).__name__} has no fixed-shape decoding, so it cannot be exported")


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


def distributed_mean(value: Tensor) -> Tensor:
    """``value`` averaged over the processes of the default group (itself when not distributed).

    Loss normalisers (such as the number of positives) go through this, so that the loss of a DDP
    run with ``N`` processes of batch ``b`` equals a one-process run of batch ``N * b`` (mmdet's
    ``reduce_mean``). The all-reduce carries no gradient (normalisers are constants).
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return value
    world = torch.distributed.get_world_size()
    if world == 1:
        return value
    total = value.detach().clone()
    torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM)
    return total / world


def batch_targets(targets: Sequence[Target], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Pad ``B`` per-image targets into batch tensors for a vectorised assigner.

    Args:
        targets: One dict per image with ``boxes [N_i, 4]``, ``labels [N_i]`` and optionally
            ``iscrowd [N_i]``.
        device: Device of the outputs.

    Returns:
        ``gt_boxes FloatTensor[B, M, 4]`` (zeros as padding), ``gt_labels Int64Tensor[B, M]``
        (``-1`` as padding) and ``gt_valid BoolTensor[B, M]`` (False for padding and crowd
        boxes), with ``M = max_i N_i``.
    """
    boxes = [t["boxes"].to(device=device, dtype=torch.float32).reshape(-1, 4) for t in targets]
    labels = [t["labels"].to(device=device, dtype=torch.int64).reshape(-1) for t in targets]
    valid = [
        (t["iscrowd"].to(device).reshape(-1) == 0) if "iscrowd" in t else torch.ones_like(lab, dtype=torch.bool)
        for t, lab in zip(targets, labels)
    ]
    gt_boxes = pad_sequence(boxes, batch_first=True)  # (B, M, 4)
    gt_labels = pad_sequence(labels, batch_first=True, padding_value=-1)  # (B, M)
    gt_valid = pad_sequence(valid, batch_first=True, padding_value=False)  # (B, M)
    return gt_boxes, gt_labels, gt_valid
