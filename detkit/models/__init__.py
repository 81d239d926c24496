"""Plain-PyTorch detection models: backbones, necks, dense heads and the composed Detector (no Lightning)."""

from typing import Any

from detkit.models.backbones import (
    Backbone,
    FeatureInfo,
    MobileNetV2Backbone,
    MobileNetV3Backbone,
    PlainConvBackbone,
    ResNetBackbone,
)
from detkit.models.csp import CSPBackbone
from detkit.models.detector import Detector
from detkit.models.heads import (
    AnchorGrid,
    AssignedTargets,
    ComposedDenseHead,
    DenseDecoder,
    DenseHead,
    FCOSAssigner,
    FCOSHead,
    FCOSLoss,
    MaxIoUAssigner,
    RetinaNetHead,
    RetinaNetLoss,
    TaskAlignedAssigner,
    TaskAlignedHead,
    TaskAlignedLoss,
    batch_targets,
    make_points,
)
from detkit.models.heads.fcos_decoder import deprecated_decoder_alias
from detkit.models.layers import ConvNormAct
from detkit.models.necks import FPN, Neck

__all__ = [
    "AnchorGrid",
    "AssignedTargets",
    "Backbone",
    "CSPBackbone",
    "ComposedDenseHead",
    "ConvNormAct",
    "DenseDecoder",
    "DenseHead",
    "Detector",
    "FCOSAssigner",
    "FCOSHead",
    "FCOSLoss",
    "FPN",
    "MaxIoUAssigner",
    "FeatureInfo",
    "MobileNetV2Backbone",
    "MobileNetV3Backbone",
    "Neck",
    "PlainConvBackbone",
    "ResNetBackbone",
    "RetinaNetHead",
    "RetinaNetLoss",
    "TaskAlignedAssigner",
    "TaskAlignedHead",
    "TaskAlignedLoss",
    "batch_targets",
    "make_points",
]


def __getattr__(name: str) -> Any:
    """``FCOSDecoder``, the deprecated name of :class:`DenseDecoder` (configs and checkpoints may name it)."""
    return deprecated_decoder_alias(__name__, name)
