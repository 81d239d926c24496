"""Export a trained detector to ONNX or TorchScript (decoding and NMS inside) with its json sidecar."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any, Literal

import torch

from detkit.deploy.graph import DeployGraph
from detkit.deploy.sidecar import SIDECAR_VERSION, read_sidecar, sidecar_path  # noqa: F401  (read_sidecar: its old home)
from detkit.ops import nms as _registers_nms_per_image  # noqa: F401  torch.ops.detkit.nms_per_image
from detkit.predictors.base import BasePredictor

__all__ = ["SUFFIXES", "export_model"]

#: The model file's suffix of each format (``load_detector`` goes by it).
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}
OUTPUT_NAMES = ["boxes", "scores", "labels", "num_detections"]


def _nms_per_image_onnx(boxes: Any, scores: Any, iou_threshold: float, max_kept: int | None = None) -> Any:
    """ONNX translation of :func:`detkit.ops.nms.nms_per_image`: one ``NonMaxSuppression`` with the
    images as its batch axis, ``max_kept`` boxes at most per image and score threshold ``-0.5``
    (masked candidates score ``-1``), its
    ``[K, 3]`` selection (image, class, box) scattered into a ``[B, N]`` mask. Per image, NMS
    compares each candidate only with the kept boxes of its own image."""
    from onnxscript import opset18 as op

    selected = op.NonMaxSuppression(boxes, op.Unsqueeze(scores, [1]), 0x7FFFFFFFFFFFFFFF if max_kept is None else max_kept, iou_threshold, -0.5)
    pairs = op.Concat(op.Slice(selected, [0], [1], [1]), op.Slice(selected, [2], [3], [1]), axis=1)  # [K, 2]
    ones = op.Expand(op.Constant(value_int=1), op.Slice(op.Shape(selected), [0], [1]))  # [K]
    mask = op.ScatterND(op.Expand(op.Constant(value_int=0), op.Shape(scores)), pairs, ones)
    return op.Cast(mask, to=9)  # BOOL


def export_model(
    model: BasePredictor,
    path: str | Path,
    format: Literal["onnx", "torchscript"] = "onnx",
    dynamic_batch: bool = False,
    score_threshold: float | None = None,
) -> Path:
    """Write ``model`` as one self-contained file plus its sidecar json (see :class:`DeployGraph`).

    Args:
        model: A loaded checkpoint (:func:`~detkit.inference.load_detector`); an exported model
            raises :class:`~detkit.predictors.ExportedModelError` (export its checkpoint instead).
        path: The model file to write (``.onnx`` / ``.torchscript``); folders are created.
        format: ``"onnx"`` (``torch.onnx.export(dynamo=True)``, weights inside the file, standard
            ONNX ops: ``NonMaxSuppression``, ``TopK``, ...) or ``"torchscript"`` (``torch.jit.trace``;
            calls ``detkit::nms_per_image``, so it loads where detkit is installed).
        dynamic_batch: ONNX: any batch size instead of 1 (TorchScript traces take any batch).
        score_threshold: Detections must score above this (default: the head's); ``predict`` can
            raise it later, not lower it.

    Returns:
        The model file's path; the sidecar is :func:`sidecar_path` of it.
    """
    if format not in SUFFIXES:
        raise ValueError(f"unknown export format {format!r}: use one of {', '.join(SUFFIXES)}")
    path = Path(path)
    if path.suffix != SUFFIXES[format]:
        raise ValueError(f"{path}: a {format} export is named *{SUFFIXES[format]} (load_detector goes by the suffix)")
    detector = copy.deepcopy(model.detector).cpu().eval()  # the caller's model stays where it is
    side = model.letterbox.padded_size
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = DeployGraph(detector, side, score_threshold).eval()
    # Batch 2: torch.export fixes dimensions it sees as 1.
    example = torch.zeros(2 if dynamic_batch and format == "onnx" else 1, 3, side, side, dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracers' notes on shapes read as constants (all fixed by S)
        if format == "onnx":
            dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic_batch else None
            torch.onnx.export(
                graph, (example,), str(path), dynamo=True, external_data=False, dynamic_shapes=dynamic,
                input_names=["images"], output_names=OUTPUT_NAMES, verbose=False,
                custom_translation_table={torch.ops.detkit.nms_per_image.default: _nms_per_image_onnx},
            )  # fmt: skip
        else:
            torch.jit.trace(graph, example, check_trace=False).save(str(path))
    decoder = getattr(detector.head, "decoder", None)
    threshold = score_threshold if score_threshold is not None else getattr(decoder, "score_threshold", None)
    info = {
        "format_version": SIDECAR_VERSION,
        "format": format,
        "class_names": model.class_names,
        "input_size": model.input_size,
        "pad_multiple": model.pad_multiple,
        "letterbox": "resize the longest side to input_size (bilinear), keep the aspect ratio, zero-pad "
        "bottom/right to a square whose side is input_size rounded up to pad_multiple",
        "input": {"name": "images", "dtype": "uint8", "layout": "NCHW RGB, letterboxed",
                  "shape": ["batch" if dynamic_batch or format == "torchscript" else 1, 3, side, side]},  # fmt: skip
        "outputs": {
            "boxes": "float32 [B, D, 4] xyxy in letterboxed input pixels",
            "scores": "float32 [B, D] descending",
            "labels": "int64 [B, D] class index, -1 past num_detections",
            "num_detections": "int64 [B]",
        },
        "score_threshold": threshold,
        "max_detections": getattr(decoder, "max_detections", None),
        "int8": False,
    }
    sidecar_path(path).write_text(json.dumps(info, indent=2))
    return path
