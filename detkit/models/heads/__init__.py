"""Detection heads: the :class:`DenseHead` interface, FCOS and the task-aligned head, each with its assigner, loss and decoder."""

from detkit.models.heads.base import DenseHead, batch_targets, make_points
from detkit.models.heads.fcos import FCOSHead
from detkit.models.heads.fcos_assigner import FCOSAssigner
from detkit.models.heads.fcos_decoder import FCOSDecoder
from detkit.models.heads.fcos_loss import FCOSLoss, centerness_target
from detkit.models.heads.tal_assigner import TaskAlignedAssigner, TaskAlignedTargets
from detkit.models.heads.tal_loss import TaskAlignedLoss, distribution_focal_loss, varifocal_loss
from detkit.models.heads.task_aligned import TaskAlignedHead, expected_distance, geometric_bin_logits

__all__ = [
    "DenseHead",
    "FCOSAssigner",
    "FCOSDecoder",
    "FCOSHead",
    "FCOSLoss",
    "TaskAlignedAssigner",
    "TaskAlignedHead",
    "TaskAlignedLoss",
    "TaskAlignedTargets",
    "batch_targets",
    "centerness_target",
    "distribution_focal_loss",
    "expected_distance",
    "geometric_bin_logits",
    "make_points",
    "varifocal_loss",
]
