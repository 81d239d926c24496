"""COCO mAP through torchmetrics, following COCO's rules (crowd boxes, annotation area, 1/10/100 dets)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision

from detkit.evaluation.cocoeval import COCO_STAT_NAMES
from detkit.evaluation.cocojson import read_json
from detkit.types import Detections, Target

__all__ = ["COCO_STAT_NAMES", "DetectionEvaluator", "coco_json_to_tensors"]


class _CocoMeanAveragePrecision(MeanAveragePrecision):
    """``MeanAveragePrecision`` that also keeps each image's id and counts every image once.

    Under DDP, Lightning's ``DistributedSampler`` pads the evaluation set with repeated samples so
    that every rank gets as many; after the gather those repeats would be counted twice. The ids
    gathered with the other per-image states let :meth:`compute` keep the first copy of each image,
    and images are then ordered by id, as pycocotools orders them (its tie-break between equal scores).
    """

    def __init__(self, voc_ap50: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.voc_ap50 = voc_ap50
        self.add_state("image_ids", default=[], dist_reduce_fx=None)  # one Int64Tensor[1] per image

    def update(self, preds: list[dict[str, Tensor]], target: list[dict[str, Tensor]], image_ids: Tensor) -> None:
        super().update(preds, target)
        self.image_ids.extend(image_ids.to(self.device).reshape(-1, 1).unbind(0))

    def compute(self) -> dict[str, Tensor]:
        ids = torch.cat(self.image_ids).tolist() if self.image_ids else []
        seen: set[int] = set()
        known, unknown = [], []  # positions of first copies of identified images; of images without id
        for position, image_id in enumerate(ids):
            if image_id < 0:
                unknown.append(position)
            elif image_id not in seen:
                seen.add(image_id)
                known.append(position)
        keep = sorted(known, key=ids.__getitem__) + unknown
        for name in self._per_image_states:
            values = getattr(self, name)
            if len(values) == len(ids):
                setattr(self, name, [values[p] for p in keep])
        out = super().compute()
        out["num_images"] = torch.tensor(len(keep))  # here, while the states are gathered across ranks
        if self.voc_ap50:
            out["voc_ap50"] = torch.tensor(self._voc_ap50())
        return out

    def _voc_ap50(self) -> float:
        """VOC all-point AP at IoU 0.5 of the (deduplicated) states, via :mod:`detkit.evaluation.voc`."""
        from detkit.evaluation.cocojson import detections_to_coco, load_ground_truth, load_results, targets_to_coco
        from detkit.evaluation.voc import voc_ap

        n = len(self.groundtruth_labels)
        targets = [
            {"image_id": i, "boxes": b.cpu(), "labels": l.cpu(), "iscrowd": c.cpu(), "area": a.cpu()}
            for i, (b, l, c, a) in enumerate(
                zip(self.groundtruth_box, self.groundtruth_labels, self.groundtruth_crowds, self.groundtruth_area)
            )
        ]
        labels = torch.cat([*self.groundtruth_labels, *self.detection_labels]).tolist()
        classes = sorted(set(labels))
        lookup = {c: k for k, c in enumerate(classes)}
        remap = lambda x: torch.tensor([lookup[v] for v in x.tolist()], dtype=torch.int64)  # noqa: E731
        targets = [{**t, "labels": remap(t["labels"])} for t in targets]
        dets = [
            {"boxes": b.cpu(), "scores": s.cpu(), "labels": remap(l)}
            for b, s, l in zip(self.detection_box, self.detection_scores, self.detection_labels)
        ]
        gt = load_ground_truth(targets_to_coco(targets, [str(c) for c in classes]))
        return voc_ap(gt, load_results(detections_to_coco(dets, list(range(n))), gt))[0]

    _per_image_states = (
        "image_ids", "detection_box", "detection_scores", "detection_labels",
        "groundtruth_box", "groundtruth_labels", "groundtruth_crowds", "groundtruth_area",
    )  # fmt: skip


class DetectionEvaluator(nn.Module):
    """Accumulates detections and ground truth of many images; ``compute()`` gives the 12 COCO stats.

    A thin wrapper over :class:`torchmetrics.detection.MeanAveragePrecision` that always passes the
    COCO ``iscrowd`` flags and annotation ``area`` (so the small/medium/large ranges use the
    annotation's own area, as pycocotools does) and returns plain floats keyed by
    :data:`COCO_STAT_NAMES`. Its state is synced across DDP ranks by torchmetrics.
    """

    def __init__(self, class_metrics: bool = False, voc_ap50: bool = False) -> None:
        """Set up the metric.

        Args:
            class_metrics: also compute torchmetrics' per-class AP / AR (slower).
            voc_ap50: also report ``voc_ap50``, VOC's all-point interpolated AP at IoU 0.5 (crowd
                boxes play VOC's "difficult").
        """
        super().__init__()
        # pycocotools' own float64 thresholds: torchmetrics' defaults come from a float32 linspace
        # (0.550000011920929, ...), which flips matches whose IoU sits on a threshold.
        iou_thresholds = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1).tolist()
        rec_thresholds = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1).tolist()
        self.voc_ap50 = voc_ap50
        self.metric = _CocoMeanAveragePrecision(
            voc_ap50=voc_ap50,
            box_format="xyxy",
            iou_type="bbox",
            iou_thresholds=iou_thresholds,
            rec_thresholds=rec_thresholds,
            class_metrics=class_metrics,
        )

    def update(self, detections: list[Detections], targets: list[Target]) -> None:
        """Add one batch; boxes of both sides must be in the same (original-image) pixels.

        Each target's ``image_id`` identifies its image: an image seen twice (as Lightning's
        ``DistributedSampler`` repeats some to fill the last shards) is counted once. Targets
        without ``image_id`` are always counted.
        """
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
        image_ids = torch.tensor([int(t.get("image_id", -1)) for t in targets], dtype=torch.int64)
        self.metric.update(preds, gts, image_ids)

    def compute(self) -> dict[str, float]:
        """The 12 COCO stats (``-1.0`` where COCO has nothing to average, as pycocotools), plus
        ``voc_ap50`` when asked for and ``num_images``, the number of distinct images counted."""
        out = self.metric.compute()
        names = COCO_STAT_NAMES + (("voc_ap50",) if self.voc_ap50 else ())
        return {name: float(out[name]) for name in (*names, "num_images")}

    def reset(self) -> None:
        """Forget everything accumulated."""
        self.metric.reset()


def coco_json_to_tensors(gt_file: str | Path, dt_file: str | Path) -> tuple[list[Detections], list[Target]]:
    """Read a COCO ground-truth json and a COCO results json into per-image detections and targets.

    Every ground-truth image is kept (images without detections get empty predictions), sorted by
    image id as pycocotools sorts them (its tie-break between equal scores follows that order); COCO ``[x, y, w, h]`` boxes become xyxy and category ids are used
    as labels unchanged.
    """
    gt, dts = read_json(gt_file), read_json(dt_file)
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
