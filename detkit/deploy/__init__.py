"""Deployment: export to ONNX / TorchScript with decoding and NMS inside, predictors over exports, int8, pruning."""

from detkit.deploy.export import export_model, read_sidecar, sidecar_path
from detkit.deploy.graph import DeployGraph
from detkit.deploy.prune import prune_checkpoint, prune_detector
from detkit.deploy.quantize import quantize_int8
from detkit.deploy.runtime import ExportedPredictor, OnnxPredictor, TorchScriptPredictor

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
