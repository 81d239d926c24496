"""COCO-format detection dataset: a folder of images plus an instances json, validated at load."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from detkit.data.images import ImageReadError, read_image
from detkit.data.records import DatasetIssues, DetectionRecords

__all__ = ["CocoDetection", "read_coco_categories"]

_EXAMPLES = 3  # how many offending annotations a warning names


def read_coco_categories(ann_file: str | Path) -> list[dict[str, Any]]:
    """The ``categories`` of a COCO json sorted by ascending id (the contiguous label order).

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        ValueError: The file is not a COCO json with categories.
    """
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    with ann_file.open("r", encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{ann_file} is not valid json: {error}") from error
    return _categories(data, ann_file)


def _categories(data: Any, ann_file: Path) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not data.get("categories"):
        raise ValueError(f"{ann_file} has no 'categories' list; is it a COCO instances json?")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    ids = [c["id"] for c in categories]
    duplicates = sorted(i for i, n in Counter(ids).items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate category ids {duplicates} in {ann_file}")
    return categories


def _examples(items: list[tuple[int, str]]) -> str:
    return ", ".join(f"annotation {a} in {f}" for a, f in items[:_EXAMPLES])


class CocoDetection(DetectionRecords):
    """Images and boxes from a COCO instances json.

    COCO category ids (possibly non-contiguous) are mapped, ascending, to labels ``0..K-1``;
    ``class_names[label]`` and ``category_ids[label]`` give the name and COCO id back. Boxes are
    converted from ``xywh`` to ``xyxy``; boxes reaching outside their image are clipped, and
    boxes empty after clipping are dropped, each with one warning per dataset that counts them.
    Images without annotations are kept as background images. ``issues`` records what was clipped,
    dropped, crowd and which category ids are non-contiguous (for ``detkit check-data``);
    ``skip_unreadable`` is as in :class:`~detkit.data.records.DetectionRecords`.

    Items are ``(image uint8 [H, W, 3] RGB, target)`` with numpy ``boxes`` float32 ``[N, 4]``,
    ``labels`` int64 ``[N]``, ``iscrowd`` int64 ``[N]``, ``area`` float32 ``[N]`` (the annotation's
    ``area``, else the box area), ``image_id`` (the COCO id) and ``file_name``.

    Attributes:
        images: The json's image dicts (``id``, ``file_name``, ``height``, ``width``) in file order.
        class_names: Category names in label order.
        category_ids: COCO category id of each label.
    """

    def __init__(self, images_dir: str | Path, ann_file: str | Path, skip_unreadable: bool = False) -> None:
        """Read and validate the annotation file (images are read lazily).

        Args:
            images_dir: Folder that image ``file_name`` entries are relative to.
            ann_file: COCO instances json.
            skip_unreadable: Skip (count and warn about) unreadable images instead of raising.

        Raises:
            FileNotFoundError: The json, the folder or an image file listed in the json is missing.
            ValueError: Duplicate image ids, an annotation of an unknown image or category.
        """
        self.images_dir = Path(images_dir)
        self.ann_file = Path(ann_file)
        self.skip_unreadable = skip_unreadable
        self.issues = DatasetIssues(source=str(self.ann_file))
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder not found: {self.images_dir} (for {self.ann_file})")
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {self.ann_file}")
        with self.ann_file.open("r", encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as error:
                raise ValueError(f"{self.ann_file} is not valid json: {error}") from error
        categories = _categories(data, self.ann_file)
        self.class_names: list[str] = [str(c["name"]) for c in categories]
        self.category_ids: list[int] = [int(c["id"]) for c in categories]
        label_of = {cid: label for label, cid in enumerate(self.category_ids)}
        if self.category_ids != list(range(len(self.category_ids))):
            self.issues.non_contiguous_ids = list(self.category_ids)

        self.images: list[dict[str, Any]] = list(data.get("images", []))
        counts = Counter(img["id"] for img in self.images)
        duplicates = sorted(i for i, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate image ids {duplicates[:10]} in {self.ann_file}")
        for img in self.images:
            path = self.images_dir / img["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"image {path} listed in {self.ann_file} (image id {img['id']}) does not exist")
            if "height" not in img or "width" not in img:
                raise ValueError(f"image {img['file_name']} (id {img['id']}) in {self.ann_file} has no height/width")
        index_of = {img["id"]: i for i, img in enumerate(self.images)}

        per_image: list[list[dict[str, Any]]] = [[] for _ in self.images]
        for ann in data.get("annotations", []):
            if ann.get("image_id") not in index_of:
                raise ValueError(
                    f"annotation {ann.get('id')} in {self.ann_file} refers to image id {ann.get('image_id')}, "
                    "which is not in 'images'"
                )
            i = index_of[ann["image_id"]]
            if ann.get("category_id") not in label_of:
                raise ValueError(
                    f"annotation {ann.get('id')} of image {self.images[i]['file_name']} in {self.ann_file} has "
                    f"unknown category id {ann.get('category_id')} (known: {self.category_ids})"
                )
            per_image[i].append(ann)

        self._clipped: list[tuple[int, str]] = []  # (annotation id, file name) of clipped boxes
        self._dropped: list[tuple[int, str]] = []  # ... and of boxes dropped as empty
        self.targets = [self._build_target(img, anns, label_of) for img, anns in zip(self.images, per_image)]
        self.files = [str(img["file_name"]) for img in self.images]
        self.sizes = [(int(img["height"]), int(img["width"])) for img in self.images]
        for img, anns, target in zip(self.images, per_image, self.targets):
            if not len(target["boxes"]):
                self.issues.background_images.append(str(img["file_name"]))
            self.issues.ignored += [f"annotation {a.get('id')} in {img['file_name']}" for a in anns if a.get("iscrowd")]
        self.issues.clipped = [f"annotation {a} in {f}" for a, f in self._clipped]
        self.issues.dropped = [f"annotation {a} in {f}" for a, f in self._dropped]
        self._warn()

    def _build_target(
        self, img: dict[str, Any], anns: list[dict[str, Any]], label_of: dict[int, int]
    ) -> dict[str, np.ndarray]:
        """Convert one image's annotations; records clipped / dropped boxes for :meth:`_warn`."""
        n = len(anns)
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(n, 4)
        raw = np.concatenate((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), axis=1)  # [N, 4] xyxy
        limits = np.array([img["width"], img["height"]] * 2, dtype=np.float64)
        boxes = np.clip(raw, 0.0, limits)
        size = boxes[:, 2:] - boxes[:, :2]
        valid = (size > 0).all(axis=1) & (xywh[:, 2:] > 0).all(axis=1)
        clipped = valid & (boxes != raw).any(axis=1)
        self._clipped += [(anns[k].get("id"), img["file_name"]) for k in np.flatnonzero(clipped)]
        self._dropped += [(anns[k].get("id"), img["file_name"]) for k in np.flatnonzero(~valid)]
        box_area = size[:, 0] * size[:, 1]
        area = np.asarray([a.get("area", b) or b for a, b in zip(anns, box_area)], dtype=np.float64).reshape(n)
        keep = np.flatnonzero(valid)
        return {
            "boxes": boxes[keep].astype(np.float32),
            "labels": np.asarray([label_of[anns[k]["category_id"]] for k in keep], dtype=np.int64),
            "iscrowd": np.asarray([int(anns[k].get("iscrowd", 0)) for k in keep], dtype=np.int64),
            "area": area[keep].astype(np.float32),
        }

    def _warn(self) -> None:
        name = self.ann_file.name
        if self._clipped:
            warnings.warn(
                f"clipped {len(self._clipped)} boxes extending outside their image in {name} "
                f"(e.g. {_examples(self._clipped)})",
                stacklevel=3,
            )
        if self._dropped:
            warnings.warn(
                f"dropped {len(self._dropped)} boxes with zero or negative size (after clipping) in {name} "
                f"(e.g. {_examples(self._dropped)})",
                stacklevel=3,
            )

    def target(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without reading its image (``image_id`` is the COCO id)."""
        target = super().target(index)
        target["image_id"] = self.images[index]["id"]
        return target

    def _read(self, index: int) -> np.ndarray:
        img = self.images[index]
        image = read_image(self.images_dir / img["file_name"])
        if image.shape[:2] != (img["height"], img["width"]):
            raise ImageReadError(
                f"image {self.images_dir / img['file_name']} is {image.shape[1]}x{image.shape[0]} (w x h, after "
                f"EXIF orientation) but {self.ann_file} says {img['width']}x{img['height']}"
            )
        return image
