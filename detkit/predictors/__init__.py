"""Predictors: the one interface (:class:`BasePredictor`) and the PyTorch checkpoint predictor."""

from detkit.predictors.base import BasePredictor, ExportedModelError, ImageInput, predict_letterboxed
from detkit.predictors.checkpoint import (
    Predictor,
    instantiate_detector,
    load_checkpoint_predictor,
    load_torchvision_predictor,
)

__all__ = [
    "BasePredictor",
    "ExportedModelError",
    "ImageInput",
    "Predictor",
    "instantiate_detector",
    "load_checkpoint_predictor",
    "load_torchvision_predictor",
    "predict_letterboxed",
]
