"""COCO-style evaluation: torchmetrics mAP wiring and COCO json conversion."""

from detkit.evaluation.coco import COCO_STAT_NAMES, DetectionEvaluator, coco_json_to_tensors

__all__ = ["COCO_STAT_NAMES", "DetectionEvaluator", "coco_json_to_tensors"]
