"""CocoEvaluator: COCO box mAP as a torchmetrics ``Metric``, computed by the exact numpy COCOeval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from detkit.evaluation.cocoeval import evaluate_coco
from detkit.evaluation.cocojson import GroundTruth, Results, load_ground_truth, load_results
from detkit.ops.xywh import xywh_to_xyxy, xyxy_to_xywh
from detkit.types import Detections, Target

__all__ = ["CocoEvaluator", "coco_json_to_tensors"]

_NO_ID = -1  # image_id state of an image whose target has no "image_id"

# Every state is a list of 1-D tensors, one per ``update`` call, that torchmetrics concatenates
# ("cat") and gathers across processes in one all_gather each (not one per image). Concatenated, the
# per-image states hold every image in arrival order, the per-box states their boxes in the same order.
_PER_IMAGE = ("image_id", "num_gt", "num_dt")  # Int64[I]
_PER_BOX = {  # name -> dtype kind
    "gt_boxes": "float",  # Float64[4 G] xyxy, flattened (1-D like every state)
    "gt_labels": "int",  # Int64[G]
    "gt_iscrowd": "int",  # Int64[G] 0 / 1
    "gt_area": "float",  # Float64[G]
    "dt_boxes": "float",  # Float64[4 D] xyxy, flattened
    "dt_scores": "float",  # Float64[D]
    "dt_labels": "int",  # Int64[D]
}


@dataclass
class _Images:
    """The accumulated images, each counted once and ordered by image id, as numpy arrays."""

    image_ids: np.ndarray  # int64[I] ascending
    gt_image: np.ndarray  # int64[G] index into image_ids
    gt_boxes: np.ndarray  # float64[G, 4] xyxy
    gt_labels: np.ndarray  # int64[G]
    gt_iscrowd: np.ndarray  # bool[G]
    gt_area: np.ndarray  # float64[G]
    dt_image: np.ndarray  # int64[D]
    dt_boxes: np.ndarray  # float64[D, 4] xyxy
    dt_scores: np.ndarray  # float64[D]
    dt_labels: np.ndarray  # int64[D]


def _boxes(boxes: Any, device: torch.device, dtype: torch.dtype) -> Tensor:
    boxes = torch.as_tensor(boxes).to(device=device, dtype=dtype)
    return boxes.reshape(0, 4) if boxes.numel() == 0 else boxes  # also an empty [0] from a collate


class CocoEvaluator(Metric):
    """COCO box mAP of many images: the 12 stats of pycocotools' ``COCOeval``, exactly.

    ``update`` keeps each image's ground truth and detections; ``compute`` evaluates them with
    :func:`~detkit.evaluation.cocoeval.evaluate_coco`, which reproduces pycocotools bit for bit
    (crowd regions, the annotations' own ``area`` for the small / medium / large ranges, at most
    100 detections per image and class). Under DDP, torchmetrics gathers the states of every
    process before ``compute``; an image seen twice (Lightning's ``DistributedSampler`` repeats
    a few to give every process as many) is counted once by its target's ``image_id``, and images
    are evaluated in ascending id order, as pycocotools orders them (its tie-break between equal
    scores), whatever order they arrived in.

    Use it like any torchmetrics metric of a LightningModule: an attribute built in ``__init__``,
    ``update(detections, targets)`` in ``validation_step``, then in ``on_validation_epoch_end``
    ``stats = evaluator.compute()`` (on every process: it gathers), log the floats, and
    ``evaluator.reset()``.

    Labels are class indices (``0 <= label < num_classes``) on both sides; they become COCO
    category ids only in :meth:`coco_inputs`, for json files and reports.

    Under DDP every process must call ``update`` at least once before ``compute`` (as each gets a
    non-empty share from ``DistributedSampler``): torchmetrics fills a process without any state
    with a float32 placeholder that cannot be gathered with the other processes' int64 states.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, voc_ap50: bool = False, **kwargs: Any) -> None:
        """Set up empty states.

        Args:
            voc_ap50: also report ``voc_ap50``, PASCAL VOC's all-point AP at IoU 0.5 (crowd boxes
                play VOC's "difficult"), via :func:`detkit.evaluation.voc.voc_ap`.
            **kwargs: torchmetrics ``Metric`` options (``process_group``, ``sync_on_compute``,
                ``dist_sync_fn``, ...).
        """
        super().__init__(**kwargs)
        self.voc_ap50 = voc_ap50
        for name in (*_PER_IMAGE, *_PER_BOX):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def _float_dtype(self) -> torch.dtype:
        # float64 keeps ground truth read from json exact (MPS has no float64).
        return torch.float32 if self.device.type == "mps" else torch.float64

    def update(self, detections: Sequence[Detections], targets: Sequence[Target]) -> None:
        """Add a batch of images, boxes of both sides in the same (original-image) pixels.

        Args:
            detections: per image ``boxes`` FloatTensor[D, 4] xyxy, ``scores`` FloatTensor[D],
                ``labels`` Int64Tensor[D].
            targets: per image ``boxes`` FloatTensor[N, 4] xyxy, ``labels`` Int64Tensor[N] and
                optionally ``iscrowd`` [N] (default 0), ``area`` [N] (default the box area) and
                ``image_id`` (an int >= 0, or a one-element tensor). Images with the same
                ``image_id`` count once (the first copy); images without one always count.

        Raises:
            ValueError: Mismatched lengths or shapes, or a negative ``image_id``.
        """
        if len(detections) != len(targets):
            raise ValueError(f"{len(detections)} detection entries but {len(targets)} targets")
        if not targets:
            return
        device, dtype = self.device, self._float_dtype()
        ids, num_gt, num_dt = [], [], []
        columns: dict[str, list[Tensor]] = {name: [] for name in _PER_BOX}
        for det, tgt in zip(detections, targets):
            boxes = _boxes(tgt["boxes"], device, dtype)
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise ValueError(f"target boxes must be [N, 4], got {tuple(boxes.shape)}")
            n = boxes.shape[0]
            labels = torch.as_tensor(tgt["labels"]).to(device=device, dtype=torch.int64).reshape(-1)
            crowd = tgt.get("iscrowd")
            crowd = torch.zeros_like(labels) if crowd is None else torch.as_tensor(crowd).to(device, torch.int64).reshape(-1)
            area = tgt.get("area")
            if area is None:
                area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            area = torch.as_tensor(area).to(device=device, dtype=dtype).reshape(-1)
            if not labels.numel() == crowd.numel() == area.numel() == n:
                raise ValueError(f"target with {n} boxes has {labels.numel()} labels, {crowd.numel()} iscrowd, {area.numel()} areas")
            dt_boxes = _boxes(det["boxes"], device, dtype)
            if dt_boxes.ndim != 2 or dt_boxes.shape[1] != 4:
                raise ValueError(f"detection boxes must be [D, 4], got {tuple(dt_boxes.shape)}")
            scores = torch.as_tensor(det["scores"]).to(device=device, dtype=dtype).reshape(-1)
            dt_labels = torch.as_tensor(det["labels"]).to(device=device, dtype=torch.int64).reshape(-1)
            if not scores.numel() == dt_labels.numel() == dt_boxes.shape[0]:
                raise ValueError(f"{dt_boxes.shape[0]} detection boxes but {scores.numel()} scores, {dt_labels.numel()} labels")
            image_id = tgt.get("image_id")
            if image_id is not None and int(image_id) < 0:
                raise ValueError(f"image_id must be >= 0, got {int(image_id)}")
            ids.append(_NO_ID if image_id is None else int(image_id))
            num_gt.append(n)
            num_dt.append(dt_boxes.shape[0])
            for name, value in zip(_PER_BOX, (boxes, labels, crowd, area, dt_boxes, scores, dt_labels)):
                columns[name].append(value.reshape(-1))
        for name, values in zip(_PER_IMAGE, (ids, num_gt, num_dt)):
            getattr(self, name).append(torch.tensor(values, dtype=torch.int64, device=device))
        for name, values in columns.items():
            getattr(self, name).append(torch.cat(values))

    def compute(self) -> dict[str, float]:
        """The 12 COCO stats keyed by :data:`~detkit.evaluation.cocoeval.COCO_STAT_NAMES` (``-1.0``
        where COCO has nothing to average, as pycocotools), then ``voc_ap50`` when asked for, then
        ``num_images``, the number of distinct images evaluated; plain floats, equal on every process.
        """
        gt, dt = self._coco(self._images())
        stats = dict(evaluate_coco(gt, dt, keep_matches=False).stats)
        if self.voc_ap50:
            from detkit.evaluation.voc import voc_ap

            stats["voc_ap50"] = voc_ap(gt, dt)[0]
        stats["num_images"] = float(len(gt.image_ids))
        return stats

    def coco_inputs(
        self, class_names: Sequence[str], category_ids: Sequence[int] | None = None
    ) -> tuple[GroundTruth, Results]:
        """The accumulated images (gathered across processes, each once) as COCOeval's inputs.

        For :func:`~detkit.evaluation.cocoeval.evaluate_coco`, the reports of
        :mod:`detkit.evaluation.report` and :func:`~detkit.evaluation.cocojson.ground_truth_to_coco` /
        :func:`~detkit.evaluation.cocojson.results_to_coco` json files. Every class is a category
        (also those without boxes); ``evaluate_coco`` of the result gives ``compute()``'s stats.
        Under DDP call it on every process, as ``compute``.

        Args:
            class_names: one name per label.
            category_ids: COCO category id of each label; default ``label + 1``.

        Raises:
            ValueError: A label is not below ``len(class_names)``, or ids and names disagree in number.
        """
        ids = np.arange(1, len(class_names) + 1) if category_ids is None else np.asarray(category_ids, dtype=np.int64)
        if ids.shape != (len(class_names),):
            raise ValueError(f"{len(class_names)} class names but {ids.size} category ids")
        if len(np.unique(ids)) != len(ids):
            raise ValueError(f"duplicate category ids: {ids.tolist()}")
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            images = self._images()
        return self._coco(images, ids, [str(n) for n in class_names])

    # ---- internals ------------------------------------------------------------------------
    def _array(self, name: str) -> np.ndarray:
        value = getattr(self, name)
        if isinstance(value, list) and not value:
            return np.zeros(0, dtype=np.float64 if _PER_BOX.get(name) == "float" else np.int64)
        return dim_zero_cat(value).cpu().numpy()

    def _images(self) -> _Images:
        """The (gathered) states with every image once: first copy of each id, by ascending id, then
        the images without id in arrival order (they get ids above all others)."""
        ids = self._array("image_id")
        known = ids != _NO_ID
        _, first = np.unique(ids, return_index=True)
        keep = ~known
        keep[first[known[first]]] = True
        kept = np.flatnonzero(keep)
        with_id, without_id = kept[known[kept]], kept[~known[kept]]
        with_id = with_id[np.argsort(ids[with_id])]
        next_id = int(ids[with_id[-1]]) + 1 if len(with_id) else 0
        image_ids = np.concatenate((ids[with_id], np.arange(next_id, next_id + len(without_id), dtype=np.int64)))
        position = np.full(len(ids), -1, dtype=np.int64)  # index into image_ids of each arrival, -1: repeat
        position[np.concatenate((with_id, without_id))] = np.arange(len(image_ids))

        gt_image = np.repeat(position, self._array("num_gt"))
        dt_image = np.repeat(position, self._array("num_dt"))
        gt, dt = gt_image >= 0, dt_image >= 0
        return _Images(
            image_ids=image_ids,
            gt_image=gt_image[gt],
            gt_boxes=self._array("gt_boxes").astype(np.float64).reshape(-1, 4)[gt],
            gt_labels=self._array("gt_labels")[gt],
            gt_iscrowd=self._array("gt_iscrowd")[gt] != 0,
            gt_area=self._array("gt_area").astype(np.float64)[gt],
            dt_image=dt_image[dt],
            dt_boxes=self._array("dt_boxes").astype(np.float64).reshape(-1, 4)[dt],
            dt_scores=self._array("dt_scores").astype(np.float64)[dt],
            dt_labels=self._array("dt_labels")[dt],
        )

    @staticmethod
    def _coco(
        images: _Images, label_ids: np.ndarray | None = None, names: list[str] | None = None
    ) -> tuple[GroundTruth, Results]:
        """COCOeval's inputs; categories are the labels seen (``label_ids`` None) or ``label_ids``.

        Boxes keep their order within each image (pycocotools' tie-break between equal scores
        and equal IoUs), so no reordering is needed across images.
        """
        gt_labels, dt_labels = images.gt_labels, images.dt_labels
        if label_ids is None:
            # Categories without ground truth do not change COCO's stats: the labels seen suffice.
            category_ids = np.union1d(gt_labels, dt_labels)
            names = [str(c) for c in category_ids.tolist()]
            gt_category = np.searchsorted(category_ids, gt_labels)
            dt_category = np.searchsorted(category_ids, dt_labels)
        else:
            num_classes = len(label_ids)
            for side, labels in (("target", gt_labels), ("detection", dt_labels)):
                bad = labels[(labels < 0) | (labels >= num_classes)]
                if bad.size:
                    raise ValueError(f"{side} label {int(bad[0])} is not a class index below {num_classes}")
            order = np.argsort(label_ids)  # GroundTruth keeps categories by ascending id
            category_ids = label_ids[order]
            names = [names[k] for k in order.tolist()]
            category_of_label = np.empty(num_classes, dtype=np.int64)
            category_of_label[order] = np.arange(num_classes)
            gt_category, dt_category = category_of_label[gt_labels], category_of_label[dt_labels]
        gt = GroundTruth(
            image_ids=images.image_ids,
            category_ids=category_ids.astype(np.int64),
            category_names=names,
            image=images.gt_image,
            category=gt_category,
            boxes=xyxy_to_xywh(images.gt_boxes),
            area=images.gt_area,
            iscrowd=images.gt_iscrowd,
        )
        dt = Results(image=images.dt_image, category=dt_category, boxes=xyxy_to_xywh(images.dt_boxes), scores=images.dt_scores)
        return gt, dt


def coco_json_to_tensors(
    gt: str | Path | dict, dt: str | Path | list, dtype: torch.dtype = torch.float32
) -> tuple[list[Detections], list[Target]]:
    """A COCO instances json and a COCO results json (paths or parsed) -> per-image detections and targets.

    One entry per ground-truth image, by ascending id, images without detections included. Boxes
    become xyxy; floats are ``dtype`` (float32 as a model gives them, float64 keeps the json's
    numbers). ``labels`` index the ground truth's categories sorted by id (``category_ids`` /
    ``category_names`` of :func:`~detkit.evaluation.cocojson.load_ground_truth`), as a dataset's
    class indices do; targets also carry ``image_id``, ``iscrowd`` and ``area``.

    Raises:
        ValueError: A detection names an image the ground truth does not have.
    """
    ground_truth = load_ground_truth(gt)
    results = load_results(dt, ground_truth)
    num_images = len(ground_truth.image_ids)

    def split(image: np.ndarray, **columns: np.ndarray) -> list[dict[str, Tensor]]:
        order = np.argsort(image, kind="stable")  # file order within an image
        bounds = np.searchsorted(image[order], np.arange(num_images + 1))
        tensors = {}
        for key, values in columns.items():
            tensor = torch.from_numpy(np.ascontiguousarray(values[order]))
            tensors[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
        return [{k: v[lo:hi] for k, v in tensors.items()} for lo, hi in zip(bounds[:-1], bounds[1:])]

    targets = split(
        ground_truth.image,
        boxes=xywh_to_xyxy(ground_truth.boxes),
        labels=ground_truth.category,
        iscrowd=ground_truth.iscrowd.astype(np.int64),
        area=ground_truth.area,
    )
    for target, image_id in zip(targets, ground_truth.image_ids.tolist()):
        target["image_id"] = image_id
    detections = split(results.image, boxes=xywh_to_xyxy(results.boxes), scores=results.scores, labels=results.category)
    return detections, targets  # type: ignore[return-value]
