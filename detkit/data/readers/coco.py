"""COCO-format reader: a folder of images plus an instances json, validated when first used."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

from detkit.data.readers.base import AnnotationError, AnnotationProblems, DatasetIssues
from detkit.data.readers.records import DetectionRecords, Records, sanitize_boxes
from detkit.ops.xywh import xywh_to_xyxy

__all__ = ["CocoReader", "read_coco_categories"]


def _load_json(ann_file: Path) -> Any:
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    with ann_file.open("r", encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise AnnotationError(f"{ann_file} is not valid json: {error}") from error


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# What each entry of a COCO json must hold: field -> (required, check, what the check expects).
_Rule = tuple[bool, Callable[[Any], bool], str]
_RULES: dict[str, dict[str, _Rule]] = {
    "categories": {
        "id": (True, _is_int, "an integer"),
        "name": (True, lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    },
    "images": {
        "id": (True, _is_int, "an integer"),
        "file_name": (True, lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
        "width": (True, lambda v: _is_number(v) and v > 0, "a positive number"),
        "height": (True, lambda v: _is_number(v) and v > 0, "a positive number"),
    },
    "annotations": {
        "id": (False, _is_int, "an integer"),
        "image_id": (True, _is_int, "an integer"),
        "category_id": (True, _is_int, "an integer"),
        "bbox": (
            True,
            lambda v: isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v),
            "4 finite numbers [x, y, width, height]",
        ),
        "area": (False, lambda v: v is None or (_is_number(v) and v >= 0), "a number >= 0"),
        "iscrowd": (False, lambda v: _is_number(v) and v in (0, 1), "0 or 1"),
    },
}
_SINGULAR = {"categories": "category", "images": "image", "annotations": "annotation"}


def _entries(
    data: dict[str, Any], key: str, ann_file: Path, problems: AnnotationProblems
) -> list[tuple[str, dict[str, Any]]]:
    """The well-formed entries of ``data[key]``, each with its name (``"image 7"``; ``"images[3]"`` without id).

    Each malformed entry is added to ``problems``, named with the field at fault; duplicate ids
    raise at once (they make every later lookup ambiguous). A missing or ``null`` list is empty.

    Raises:
        AnnotationError: ``data[key]`` is not a list, or two entries share an id.
    """
    entries = data.get(key)
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise AnnotationError(f"{ann_file}: '{key}' must be a list, got {type(entries).__name__}")
    kind, valid = _SINGULAR[key], []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add(f"{key} entries that are not objects", f"{key}[{k}] = {entry!r:.40}")
            continue
        name = f"{kind} {entry['id']}" if _is_int(entry.get("id")) else f"{key}[{k}]"  # without id: its position
        ok = True
        for field, (required, check, expected) in _RULES[key].items():
            if field not in entry:
                if required:
                    problems.add(f"{key} without '{field}'", name)
                    ok = False
            elif not check(entry[field]):
                problems.add(f"{key} whose '{field}' is not {expected}", f"{name} ({field}: {entry[field]!r:.40})")
                ok = False
        if ok:
            valid.append((name, entry))
    duplicates = sorted(i for i, n in Counter(e["id"] for _, e in valid if "id" in e).items() if n > 1)
    if duplicates:
        raise AnnotationError(f"duplicate {kind} ids {duplicates[:10]} in {ann_file}")
    return valid


def read_coco_categories(ann_file: str | Path) -> list[dict[str, Any]]:
    """The ``categories`` of a COCO json sorted by ascending id (the contiguous label order).

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        AnnotationError: The file is not a COCO json with categories, or a category lacks its ``id``
            or ``name`` (named), or two share an id.
    """
    ann_file = Path(ann_file)
    return _categories(_load_json(ann_file), ann_file)


def _categories(data: Any, ann_file: Path) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not data.get("categories"):
        raise AnnotationError(f"{ann_file} has no 'categories' list; is it a COCO instances json?")
    problems = AnnotationProblems(ann_file)
    categories = [c for _, c in _entries(data, "categories", ann_file, problems)]
    problems.raise_if_any()
    return sorted(categories, key=lambda c: c["id"])


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
            AnnotationError: Invalid json; an entry without a field it needs or with a malformed one
                (category ``id`` / ``name``; image ``id`` / ``file_name`` / ``width`` / ``height``;
                annotation ``image_id`` / ``category_id`` / ``bbox``, and ``id`` / ``area`` /
                ``iscrowd`` when given), named with its id and the field; duplicate category, image
                or annotation ids; an annotation of an unknown image or category; no images.
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

        problems = AnnotationProblems(self.ann_file)
        images = [img for _, img in _entries(data, "images", self.ann_file, problems)]
        annotations = _entries(data, "annotations", self.ann_file, problems)
        problems.raise_if_any()
        if not images:
            raise AnnotationError(
                f"{self.ann_file}: no images ('images' is missing or empty; {len(category_ids)} categories, "
                f"{len(annotations)} annotations): a dataset needs images"
            )
        for img in images:
            path = self.images_dir / img["file_name"]
            if not path.is_file():
                raise FileNotFoundError(f"image {path} listed in {self.ann_file} (image id {img['id']}) does not exist")
        index_of = {img["id"]: i for i, img in enumerate(images)}

        per_image: list[list[dict[str, Any]]] = [[] for _ in images]
        for name, ann in annotations:
            if ann["image_id"] not in index_of:
                problems.add("annotations of an image id not in 'images'", f"{name} (image id {ann['image_id']})")
            elif ann["category_id"] not in label_of:
                where = f"{name} of {images[index_of[ann['image_id']]]['file_name']}"
                problems.add(f"annotations of unknown category ids (known: {category_ids})",
                             f"{where} (category id {ann['category_id']})")  # fmt: skip
            else:
                per_image[index_of[ann["image_id"]]].append(ann)
        problems.raise_if_any()

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
    boxes = xywh_to_xyxy(xywh)  # [N, 4] xyxy
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
