"""Detection heads: the :class:`DenseHead` interface and its shared parts, FCOS, the task-aligned head and RetinaNet."""

from typing import Any

from detkit.models.heads.anchors import AnchorGrid
from detkit.models.heads.base import (
    AssignedTargets,
    ComposedDenseHead,
    DenseHead,
    batch_targets,
    init_dense_convs,
    make_points,
)
from detkit.models.heads.dense_decoder import DenseDecoder
from detkit.models.heads.fcos import FCOSHead
from detkit.models.heads.fcos_assigner import FCOSAssigner
from detkit.models.heads.fcos_decoder import deprecated_decoder_alias
from detkit.models.heads.fcos_loss import FCOSLoss, centerness_target
from detkit.models.heads.iou_assigner import MaxIoUAssigner
from detkit.models.heads.losses import class_targets, positive_box_pairs
from detkit.models.heads.retinanet import RetinaNetHead
from detkit.models.heads.retinanet_loss import RetinaNetLoss
from detkit.models.heads.tal_assigner import TaskAlignedAssigner
from detkit.models.heads.tal_loss import TaskAlignedLoss, distribution_focal_loss, varifocal_loss
from detkit.models.heads.task_aligned import TaskAlignedHead, expected_distance, geometric_bin_logits

__all__ = [
    "AnchorGrid",
    "AssignedTargets",
    "ComposedDenseHead",
    "DenseDecoder",
    "DenseHead",
    "FCOSAssigner",
    "FCOSHead",
    "FCOSLoss",
    "MaxIoUAssigner",
    "RetinaNetHead",
    "RetinaNetLoss",
    "TaskAlignedAssigner",
    "TaskAlignedHead",
    "TaskAlignedLoss",
    "batch_targets",
    "centerness_target",
    "class_targets",
    "distribution_focal_loss",
    "expected_distance",
    "geometric_bin_logits",
    "init_dense_convs",
    "make_points",
    "positive_box_pairs",
    "varifocal_loss",
]

#: The name of :class:`AssignedTargets` when only the task-aligned assigner returned it.
TaskAlignedTargets = AssignedTargets


def __getattr__(name: str) -> Any:
    """``FCOSDecoder``, the deprecated name of :class:`DenseDecoder`."""
    return deprecated_decoder_alias(__name__, name)
