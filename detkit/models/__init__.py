"""Plain-PyTorch detection models: backbones, FPN, FCOS head, assigner, losses and the Detector."""

from detkit.models.assigner import FCOSAssigner
from detkit.models.backbones import (
    Backbone,
    FeatureInfo,
    MobileNetV3Backbone,
    PlainConvBackbone,
    ResNetBackbone,
)
from detkit.models.detector import Detector
from detkit.models.fpn import FPN
from detkit.models.head import FCOSHead, make_points
from detkit.models.layers import ConvNormAct
from detkit.models.losses import FCOSLoss
from detkit.models.postprocess import PostProcess

__all__ = [
    "Backbone",
    "ConvNormAct",
    "Detector",
    "FCOSAssigner",
    "FCOSHead",
    "FCOSLoss",
    "FPN",
    "FeatureInfo",
    "MobileNetV3Backbone",
    "PlainConvBackbone",
    "PostProcess",
    "ResNetBackbone",
    "make_points",
]
