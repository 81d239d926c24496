"""Plain-PyTorch detection models: backbones, necks, dense heads and the composed Detector (no Lightning)."""

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
    DenseHead,
    FCOSAssigner,
    FCOSDecoder,
    FCOSHead,
    FCOSLoss,
    TaskAlignedAssigner,
    TaskAlignedHead,
    TaskAlignedLoss,
    batch_targets,
    make_points,
)
from detkit.models.layers import ConvNormAct
from detkit.models.necks import FPN, Neck

__all__ = [
    "Backbone",
    "CSPBackbone",
    "ConvNormAct",
    "DenseHead",
    "Detector",
    "FCOSAssigner",
    "FCOSDecoder",
    "FCOSHead",
    "FCOSLoss",
    "FPN",
    "FeatureInfo",
    "MobileNetV2Backbone",
    "MobileNetV3Backbone",
    "Neck",
    "PlainConvBackbone",
    "ResNetBackbone",
    "TaskAlignedAssigner",
    "TaskAlignedHead",
    "TaskAlignedLoss",
    "batch_targets",
    "make_points",
]
