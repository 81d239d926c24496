"""The dense-head interface every detection head implements, and the parts dense heads share.

A head turns the neck's pyramid maps into raw per-point outputs (``forward``), scores them against
targets (``loss``) and decodes them into detections (``predict``). It owns whatever assigns targets,
computes losses and decodes boxes, so the :class:`~detkit.models.Detector` never reads its outputs.

:class:`DenseHead` is the interface; :class:`ComposedDenseHead` adds what the built-in heads share
(an assigner, a loss and a :class:`~detkit.models.heads.dense_decoder.DenseDecoder` passed in as
objects, decoding, the RetinaNet/FCOS initialisation); every assigner returns
:class:`AssignedTargets`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence
from torchvision.ops import clip_boxes_to_image

from detkit.models.backbones import FeatureInfo
from detkit.models.heads.dense_decoder import DenseDecoder
from detkit.ops.boxes import decode_ltrb
from detkit.types import Detections, Target

__all__ = [
    "AssignedTargets",
    "ComposedDenseHead",
    "DenseHead",
    "batch_targets",
    "distributed_mean",
    "init_dense_convs",
    "make_points",
]


class AssignedTargets(NamedTuple):
    """What an assigner gives each of the ``P`` positions (points or anchors) of each image.

    Attributes:
        labels: ``Int64Tensor[B, P]`` assigned class, ``-1`` for background.
        boxes: ``FloatTensor[B, P, 4]`` assigned xyxy box in input pixels (zeros for background).
        scores: ``FloatTensor[B, P]`` in ``[0, 1]``: the assigned class's classification target and
            the position's loss weight; ``1`` for every positive of a hard assigner (FCOS), the
            normalised alignment for the task-aligned one, ``0`` for background.
        gt_index: ``Int64Tensor[B, P]`` index of the assigned box among the image's ``M`` (padded)
            boxes, ``-1`` for background.
    """

    labels: Tensor
    boxes: Tensor
    scores: Tensor
    gt_index: Tensor


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
    #: Where in its cell a position sits, in cells: ``0.5`` the centre, ``0.0`` the top-left corner
    #: (torchvision's FCOS and RetinaNet anchors); :meth:`dense_outputs` passes it to :func:`make_points`.
    point_offset: float = 0.5

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

    def check_levels(self, features: Sequence[Tensor]) -> None:
        """Raise ``ValueError`` unless there is one feature map per entry of ``in_features``."""
        if len(features) != len(self.in_features):
            raise ValueError(
                f"{type(self).__name__} built for {len(self.in_features)} levels, got {len(features)} feature maps"
            )

    def dense_outputs(self, features: list[Tensor], **per_level: list[Tensor]) -> dict[str, Tensor]:
        """The outputs dict of :meth:`forward`: each ``name=[(B, HW_l, ...) per level]`` concatenated
        over levels to ``(B, P, ...)``, plus ``points (P, 2)`` and ``point_strides (P,)`` of the
        ``features``' grids (:func:`make_points`)."""
        points, point_strides = make_points(
            [tuple(f.shape[-2:]) for f in features],
            self.strides,
            device=features[0].device,
            dtype=torch.float32,
            offset=self.point_offset,
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
            (see :meth:`~detkit.models.DenseDecoder.padded`). Heads that can be exported override this.
        """
        raise NotImplementedError(f"{type(self).__name__} has no fixed-shape decoding, so it cannot be exported")


def make_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    offset: float = 0.5,
) -> tuple[Tensor, Tensor]:
    """Positions of every feature cell in input pixels (its centre by default), levels concatenated in order.

    Within a level the order is row-major, matching ``(B, C, H, W) -> (B, HW, C)`` flattening.

    Args:
        feature_sizes: ``(H_l, W_l)`` per level.
        strides: Stride per level.
        device: Device of the outputs.
        dtype: Float dtype of ``points``.
        offset: Position within the cell, in cells: ``0.5`` its centre, ``0.0`` its top-left corner
            (where torchvision's anchor generator puts its anchors).

    Returns:
        ``points [P, 2]`` with ``x = (j + offset) * stride``, ``y = (i + offset) * stride`` and
        ``point_strides [P]`` (same dtype), where ``P = sum_l H_l * W_l``.
    """
    if len(feature_sizes) != len(strides):
        raise ValueError(f"got {len(feature_sizes)} feature sizes but {len(strides)} strides")
    points, point_strides = [], []
    for (h, w), s in zip(feature_sizes, strides):
        ys = (torch.arange(h, device=device, dtype=dtype) + offset) * s
        xs = (torch.arange(w, device=device, dtype=dtype) + offset) * s
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


def batch_targets(
    targets: Sequence[Target], device: torch.device, num_images: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Pad ``B`` per-image targets into batch tensors for a vectorised assigner.

    Args:
        targets: One dict per image with ``boxes [N_i, 4]``, ``labels [N_i]`` and optionally
            ``iscrowd [N_i]``.
        device: Device of the outputs.
        num_images: When given, the batch size of the head's outputs: ``ValueError`` unless
            ``targets`` has one entry per image.

    Returns:
        ``gt_boxes FloatTensor[B, M, 4]`` (zeros as padding), ``gt_labels Int64Tensor[B, M]``
        (``-1`` as padding) and ``gt_valid BoolTensor[B, M]`` (False for padding and crowd
        boxes), with ``M = max_i N_i``.
    """
    if num_images is not None and len(targets) != num_images:
        raise ValueError(f"got outputs for {num_images} images but {len(targets)} targets")
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


def init_dense_convs(head: nn.Module, cls_layers: Iterable[nn.Conv2d], prior_prob: float) -> None:
    """The RetinaNet / FCOS initialisation of a dense head's convolutions, in place.

    Every ``nn.Conv2d`` of ``head`` (in ``head.modules()`` order, so the random stream is the
    same for the same layers) gets weights from ``N(0, 0.01^2)`` and zero bias; then the biases of
    ``cls_layers`` are set to ``-log((1 - p) / p)``, so every class starts at probability ``p`` and
    the many background positions do not swamp the first steps' loss.

    Args:
        head: The module whose convolutions are initialised.
        cls_layers: The class-logit convolutions (with bias) among them.
        prior_prob: Initial foreground probability ``p``, in ``(0, 1)``.
    """
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
    for m in head.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for layer in cls_layers:
        nn.init.constant_(layer.bias, -math.log((1.0 - prior_prob) / prior_prob))


class ComposedDenseHead(DenseHead):
    """A :class:`DenseHead` that owns an assigner, a loss and a :class:`DenseDecoder`, and decodes with them.

    Subclasses build their layers, then call :meth:`set_parts`; they implement ``forward`` and
    ``loss`` and inherit :meth:`predict` and :meth:`predict_padded`, which score and box every
    position with :meth:`scores_and_boxes` (override it for other box codings, such as anchors)
    and select detections with the decoder.

    Attributes:
        assigner: Which target each position learns; returns :class:`AssignedTargets`.
        criterion: The training loss (the ``loss`` argument; ``loss`` is the method).
        decoder: Inference decoding.
    """

    assigner: nn.Module
    criterion: nn.Module
    decoder: DenseDecoder

    def set_parts(
        self,
        assigner: nn.Module | None,
        loss: nn.Module | None,
        decoder: DenseDecoder | None,
        *,
        default_assigner: Callable[[], nn.Module],
        default_loss: Callable[[], nn.Module],
        default_decoder: Callable[[], DenseDecoder] = DenseDecoder,
    ) -> None:
        """Own the given parts, building the defaults for those that are ``None``.

        The parts are parameter-free; call this after building the layers, so that the parts
        never move the layers' random initialisation.
        """
        self.assigner = assigner if assigner is not None else default_assigner()
        self.criterion = loss if loss is not None else default_loss()
        self.decoder = decoder if decoder is not None else default_decoder()

    def scores_and_boxes(self, outputs: dict[str, Tensor], image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Class scores and boxes of every position, what the decoder selects from.

        Reads ``cls_logits (B, P, K)``, ``ltrb (B, P, 4)``, ``points (P, 2)`` and, when the head
        has them, ``quality_logits (B, P)``.

        Returns:
            ``scores (B, P, K)``: ``sigmoid(cls)``, or ``sqrt(sigmoid(cls) * sigmoid(quality))``
            with quality logits; ``boxes (B, P, 4)``: xyxy decoded from the points' ltrb distances
            and clipped to ``image_size`` ``(height, width)``. Float32.
        """
        scores = torch.sigmoid(outputs["cls_logits"].float())  # (B, P, K)
        quality_logits = outputs.get("quality_logits")
        if quality_logits is not None:
            scores = torch.sqrt(scores * torch.sigmoid(quality_logits.float())[..., None])
        boxes = clip_boxes_to_image(decode_ltrb(outputs["points"][None].float(), outputs["ltrb"].float()), image_size)
        return scores, boxes

    @torch.no_grad()
    def predict(
        self, outputs: dict[str, Tensor], image_size: tuple[int, int], score_threshold: float | None = None
    ) -> list[Detections]:
        """Decode detections with the head's decoder (see :meth:`DenseHead.predict`)."""
        scores, boxes = self.scores_and_boxes(outputs, image_size)
        # Positions per level from the runs of equal strides (inference only, a host sync is fine).
        _, level_sizes = torch.unique_consecutive(outputs["point_strides"], return_counts=True)
        return self.decoder(scores, boxes, level_sizes.tolist(), score_threshold)

    @torch.no_grad()
    def predict_padded(
        self,
        outputs: dict[str, Tensor],
        image_size: tuple[int, int],
        level_sizes: list[int],
        score_threshold: float | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Fixed-shape decoding with the head's decoder (see :meth:`DenseHead.predict_padded`)."""
        scores, boxes = self.scores_and_boxes(outputs, image_size)
        return self.decoder.padded(scores, boxes, level_sizes, image_size, score_threshold)
