"""Downstream inference: ``load_detector`` turns a checkpoint or an export into a ready predictor."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from detkit.data.images import to_rgb_array
from detkit.predictors import (
    BasePredictor,
    ExportedModelError,
    ImageInput,
    Predictor,
    instantiate_detector,
    load_checkpoint_predictor,
    load_torchvision_predictor,
    predict_letterboxed,
)

__all__ = [
    "EXPORT_SUFFIXES",
    "BasePredictor",
    "ExportedModelError",
    "ImageInput",
    "Predictor",
    "instantiate_detector",
    "load_detector",
    "predict_letterboxed",
    "to_hwc_array",
]

#: The name earlier detkit versions exported: one image in any form -> ``[H, W, 3]`` uint8 RGB.
to_hwc_array = to_rgb_array

#: File suffixes :func:`load_detector` reads as exports (``detkit export``), not as checkpoints.
EXPORT_SUFFIXES = (".onnx", ".torchscript")


def load_detector(path: str | Path, device: str | torch.device = "cpu", trusted: Sequence[str] = ()) -> BasePredictor:
    """Load a checkpoint written by ``detkit fit``, or a model written by ``detkit export``, into a
    ready predictor: the same ``predict``, ``predict_batch``, ``class_names`` and ``letterbox``
    either way (:class:`~detkit.predictors.BasePredictor`).

    - A checkpoint gives a :class:`Predictor` (PyTorch, eval mode, on ``device``). Loading uses
      ``torch.load(weights_only=True)`` and builds only detkit classes (plus those of the
      ``trusted`` modules, e.g. ``trusted=["my_heads"]`` for your own head): a checkpoint cannot
      run code. No Trainer or config file is needed; the detector's config, class names and input
      size come from the checkpoint's ``detkit`` block.
    - An export (``.onnx``, ``.torchscript``, its ``.json`` sidecar beside it) gives an
      :class:`~detkit.deploy.ExportedPredictor`, run by onnxruntime (``pip install
      'detkit[deploy]'``) or TorchScript on the CPU. It has no PyTorch ``detector``: asking for
      it (export, pruning, feature maps, Grad-CAM) raises :class:`ExportedModelError`.
    - ``"torchvision:fcos_resnet50_fpn:COCO_V1"`` (or ``retinanet_resnet50_fpn_v2``, or a local
      ``.pth`` after the second colon) gives torchvision's COCO detector rebuilt from detkit parts,
      as a :class:`Predictor` with COCO's class names, letterboxing to 800 px
      (:func:`~detkit.predictors.load_torchvision_predictor`).

    Raises:
        FileNotFoundError: No file at ``path`` (or no sidecar beside an export).
        ValueError: The file is truncated, not a torch file, or not a detkit checkpoint (the
            message names it), or records no detector config or input size; an export asked
            to run on another device than the CPU.
    """
    if isinstance(path, str) and path.startswith("torchvision:"):
        return load_torchvision_predictor(path, device)
    path = Path(path)
    if path.suffix not in EXPORT_SUFFIXES:
        return load_checkpoint_predictor(path, device, trusted)
    from detkit.deploy.runtime import OnnxPredictor, TorchScriptPredictor

    if torch.device(device).type != "cpu":
        raise ValueError(f"{path}: exported models run on the CPU here (onnxruntime / TorchScript), not {device}")
    return OnnxPredictor(path) if path.suffix == ".onnx" else TorchScriptPredictor(path)
