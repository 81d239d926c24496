"""COCO-format reader: a folder of images plus an instances json, validated when first used."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.readers.base import DatasetIssues
from detkit.data.readers.records import DetectionRecords, Records, sanitize_boxes

__all__ = ["CocoReader", "read_coco_categories"]


def _load_json(ann_file: Path) -> Any:
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    with ann_file.open("r", encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{ann_file} is not valid json: {error}") from error


def read_coco_categories(ann_file: str | Path) -> list[dict[str, Any]]:
    """The ``categories`` of a COCO json sorted by ascending id (the contiguous label order).

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        ValueError: The file is not a COCO json with categories.
    """
    ann_file = Path(ann_file)
    return _categories(_load_json(ann_file), ann_file)


def _categories(data: Any, ann_file: Path) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not data.get("categories"):
        raise ValueError(f"{ann_file} has no 'categories' list; is it a COCO instances json?")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate category ids {duplicates} in {ann_file}")
    return categories


class CocoReader(DetectionRecords):
    """Images and boxes from a COCO instances json.

    COCO category ids (possibly non-contiguous) are mapped, ascending, to labels ``0..K-1``;
    ``class_names[label]`` and ``category_ids[label]`` give the name and COCO id back. Boxes are
    converted from ``xywh`` to ``xyxy``; boxes reaching outside their image are clipped, and
    boxes empty after clipping are dropped, each with one warning per dataset that counts them.
    Images without annotations are kept as background images. ``issues`` records what was clipped,
    dropped, crowd and which category ids are non-contiguous (for ``detkit check-data``). See
    :class:`~detkit.data.readers.records.DetectionRecords` for items and ``skip_unreadable``.

    Items' ``area`` is the annotation's ``area`` (else the clipped box area), ``image_id`` the COCO id.

    Attributes:
        ann_file: The instances json.
        image_ids: COCO image id of each item, in the json's order.
        class_names: Category names in label order.
        category_ids: COCO category id of each label.
    """

    def __init__(self, images: str | Path, annotations: str | Path, skip_unreadable: bool = False) -> None:
        """Store the paths (the json is parsed and validated on first use).

        Args:
            images: Folder that the json's image ``file_name`` entries are relative to.
            annotations: COCO instances json.
            skip_unreadable: Skip (count and warn about) unreadable images instead of raising.

        Loading raises:
            FileNotFoundError: The json, the folder or an image file listed in the json is missing.
            ValueError: Invalid json, duplicate image or category ids, an image without size, an
                annotation of an unknown image or category.
        """
        super().__init__(images, skip_unreadable)
        self.ann_file = Path(annotations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(annotations='{self.ann_file}')"

    def _parse(self) -> Records:
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder not found: {self.images_dir} (for {self.ann_file})")
        data = _load_json(self.ann_file)
        issues = DatasetIssues(source=str(self.ann_file))
        categories = _categories(data, self.ann_file)
        class_names = [str(c["name"]) for c in categories]
        category_ids = [int(c["id"]) for c in categories]
        label_of = {cid: label for label, cid in enumerate(category_ids)}
        if category_ids != list(range(len(category_ids))):
            issues.non_contiguous_ids = list(category_ids)

        images: list[dict[str, Any]] = list(data.get("images", []))
        duplicates = sorted(i for i, n in Counter(img["id"] for img in images).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate image ids {duplicates[:10]} in {self.ann_file}")
        for img in images:
            path = self.images_dir / img["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"image {path} listed in {self.ann_file} (image id {img['id']}) does not exist")
            if "height" not in img or "width" not in img:
                raise ValueError(f"image {img['file_name']} (id {img['id']}) in {self.ann_file} has no height/width")
        index_of = {img["id"]: i for i, img in enumerate(images)}

        per_image: list[list[dict[str, Any]]] = [[] for _ in images]
        for ann in data.get("annotations", []):
            if ann.get("image_id") not in index_of:
                raise ValueError(
                    f"annotation {ann.get('id')} in {self.ann_file} refers to image id {ann.get('image_id')}, "
                    "which is not in 'images'"
                )
            i = index_of[ann["image_id"]]
            if ann.get("category_id") not in label_of:
                raise ValueError(
                    f"annotation {ann.get('id')} of image {images[i]['file_name']} in {self.ann_file} has "
                    f"unknown category id {ann.get('category_id')} (known: {category_ids})"
                )
            per_image[i].append(ann)

        targets = [_target(img, anns, label_of, issues) for img, anns in zip(images, per_image)]
        issues.warn(stacklevel=6)
        return Records(
            files=[str(img["file_name"]) for img in images],
            sizes=[(int(img["height"]), int(img["width"])) for img in images],
            targets=targets,
            class_names=class_names,
            issues=issues,
            image_ids=[img["id"] for img in images],
            category_ids=category_ids,
        )


def _target(
    img: dict[str, Any], anns: list[dict[str, Any]], label_of: dict[int, int], issues: DatasetIssues
) -> dict[str, np.ndarray]:
    """Convert one image's annotations (xywh -> clipped xyxy), recording what was clipped, dropped, crowd."""
    n = len(anns)
    xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(n, 4)
    boxes = np.concatenate((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), axis=1)  # [N, 4] xyxy
    names = [f"annotation {a.get('id')} in {img['file_name']}" for a in anns]
    keep = sanitize_boxes(boxes, img["width"], img["height"], names, issues)
    size = boxes[:, 2:] - boxes[:, :2]
    box_area = size[:, 0] * size[:, 1]
    area = np.asarray([a.get("area", b) or b for a, b in zip(anns, box_area)], dtype=np.float64).reshape(n)
    iscrowd = np.asarray([int(a.get("iscrowd", 0)) for a in anns], dtype=np.int64).reshape(n)
    labels = np.asarray([label_of[a["category_id"]] for a in anns], dtype=np.int64).reshape(n)
    if not keep.any():
        issues.background_images.append(str(img["file_name"]))
    issues.ignored += [name for name, crowd, k in zip(names, iscrowd, keep) if crowd and k]
    return {
        "boxes": boxes[keep].astype(np.float32),
        "labels": labels[keep],
        "iscrowd": iscrowd[keep],
        "area": area[keep].astype(np.float32),
    }
