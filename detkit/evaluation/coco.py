"""COCO mAP through torchmetrics, following COCO's rules (crowd boxes, annotation area, 1/10/100 dets)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision

from detkit.types import Detections, Target

# The 12 numbers of pycocotools' ``COCOeval.summarize()``, in its order, as torchmetrics names them.
COCO_STAT_NAMES: tuple[str, ...] = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


class DetectionEvaluator(nn.Module):
    """Accumulates detections and ground truth of many images; ``compute()`` gives the 12 COCO stats.

    A thin wrapper over :class:`torchmetrics.detection.MeanAveragePrecision` that always passes the
    COCO ``iscrowd`` flags and annotation ``area`` (so the small/medium/large ranges use the
    annotation's own area, as pycocotools does) and returns plain floats keyed by
    :data:`COCO_STAT_NAMES`. Its state is synced across DDP ranks by torchmetrics.
    """

    def __init__(self, class_metrics: bool = False) -> None:
        super().__init__()
        # pycocotools' own float64 thresholds: torchmetrics' defaults come from a float32 linspace
        # (0.550000011920929, ...), which flips matches whose IoU sits on a threshold.
        iou_thresholds = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1).tolist()
        rec_thresholds = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1).tolist()
        self.metric = MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            iou_thresholds=iou_thresholds,
            rec_thresholds=rec_thresholds,
            class_metrics=class_metrics,
        )

    def update(self, detections: list[Detections], targets: list[Target]) -> None:
        """Add one batch; boxes of both sides must be in the same (original-image) pixels."""
        gts = []
        for t in targets:
            labels = t["labels"]
            boxes = t["boxes"].float()
            area = t.get("area")
            if area is None:
                area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            iscrowd = t.get("iscrowd")
            if iscrowd is None:
                iscrowd = torch.zeros_like(labels)
            gts.append({"boxes": boxes, "labels": labels, "iscrowd": iscrowd, "area": area.float()})
        preds = [{"boxes": d["boxes"].float(), "scores": d["scores"].float(), "labels": d["labels"]} for d in detections]
        self.metric.update(preds, gts)

    def compute(self) -> dict[str, float]:
        """The 12 COCO stats (``-1.0`` where COCO has nothing to average, as pycocotools)."""
        out = self.metric.compute()
        return {name: float(out[name]) for name in COCO_STAT_NAMES}

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.metric.reset()


def coco_json_to_tensors(gt_file: str | Path, dt_file: str | Path) -> tuple[list[Detections], list[Target]]:
    """Read a COCO ground-truth json and a COCO results json into per-image detections and targets.

    Every ground-truth image is kept (images without detections get empty predictions), sorted by
    image id as pycocotools sorts them (its tie-break between equal scores follows that order); COCO ``[x, y, w, h]`` boxes become xyxy and category ids are used
    as labels unchanged.
    """
    gt = json.loads(Path(gt_file).read_text())
    dts = json.loads(Path(dt_file).read_text())
    anns_by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in gt["annotations"]:
        anns_by_image[ann["image_id"]].append(ann)
    dets_by_image: dict[int, list[dict]] = defaultdict(list)
    known = {img["id"] for img in gt["images"]}
    for det in dts:
        if det["image_id"] not in known:
            raise ValueError(f"{dt_file}: detection for image_id {det['image_id']} not in ground truth {gt_file}")
        dets_by_image[det["image_id"]].append(det)

    def xyxy(items: list[dict]) -> Tensor:
        boxes = torch.tensor([a["bbox"] for a in items], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return boxes.float()

    detections: list[Detections] = []
    targets: list[Target] = []
    for img in sorted(gt["images"], key=lambda image: image["id"]):
        anns, dets = anns_by_image[img["id"]], dets_by_image[img["id"]]
        targets.append(
            {
                "boxes": xyxy(anns),
                "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
                "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
                "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
                "image_id": img["id"],
            }
        )
        detections.append(
            {
                "boxes": xyxy(dets),
                "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float32),
                "labels": torch.tensor([d["category_id"] for d in dets], dtype=torch.int64),
            }
        )
    return detections, targets
