"""Detection heads: the :class:`DenseHead` interface and FCOS with its assigner, loss and decoder."""

from detkit.models.heads.base import DenseHead, batch_targets, make_points
from detkit.models.heads.fcos import FCOSHead
from detkit.models.heads.fcos_assigner import FCOSAssigner
from detkit.models.heads.fcos_decoder import FCOSDecoder
from detkit.models.heads.fcos_loss import FCOSLoss, centerness_target

__all__ = [
    "DenseHead",
    "FCOSAssigner",
    "FCOSDecoder",
    "FCOSHead",
    "FCOSLoss",
    "batch_targets",
    "centerness_target",
    "make_points",
]
