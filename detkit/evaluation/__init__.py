"""COCO-style evaluation: the exact numpy COCOeval, its torchmetrics wrapper, COCO json conversion, reports."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from detkit.evaluation.cocoeval import COCO_STAT_NAMES, CocoEvalResult, evaluate_coco
from detkit.evaluation.cocojson import GroundTruth, Results, load_ground_truth, load_results
from detkit.evaluation.tide import ErrorDecomposition, evaluate_tide

__all__ = [
    "COCO_STAT_NAMES",
    "CocoEvalResult",
    "CocoEvaluator",
    "ErrorDecomposition",
    "GroundTruth",
    "Results",
    "coco_json_to_tensors",
    "evaluate_coco",
    "evaluate_tide",
    "load_ground_truth",
    "load_results",
]

if TYPE_CHECKING:
    from detkit.evaluation.metric import CocoEvaluator, coco_json_to_tensors

# Names that need torch / torchmetrics, imported on first use so that ``detkit evaluate --gt --dt``
# (numpy only) starts fast.
_LAZY = {"CocoEvaluator": "detkit.evaluation.metric", "coco_json_to_tensors": "detkit.evaluation.metric"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'detkit.evaluation' has no attribute {name!r}")
