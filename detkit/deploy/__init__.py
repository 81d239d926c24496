"""Deployment: export to ONNX / TorchScript with decoding and NMS inside, predictors over exports, int8, pruning."""

from detkit.deploy.export import export_model
from detkit.deploy.graph import DeployGraph
from detkit.deploy.prune import prune_checkpoint, prune_detector
from detkit.deploy.quantize import quantize_int8
from detkit.deploy.runtime import ExportedPredictor, OnnxPredictor, TorchScriptPredictor
from detkit.deploy.sidecar import read_sidecar, sidecar_path

__all__ = [
    "DeployGraph",
    "ExportedPredictor",
    "OnnxPredictor",
    "TorchScriptPredictor",
    "export_model",
    "prune_checkpoint",
    "prune_detector",
    "quantize_int8",
    "read_sidecar",
    "sidecar_path",
]
