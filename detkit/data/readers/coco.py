"""COCO-format reader: a folder of images plus an instances json, validated when first used.

The json is read as columns (:mod:`detkit.data.readers.coco_json`: orjson, the ``annotations``
list a few hundred entries at a time, each field one numpy array checked with array operations),
and boxes are grouped by image with a stable argsort into flat arrays and offsets
(:class:`~detkit.data.readers.records.PackedTargets`). ``python -m tools.bench_scale parse``
measures it against pycocotools.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.readers.base import AnnotationError, AnnotationProblems, DatasetIssues
from detkit.data.readers.coco_json import check_unique_ids, checked_entries, column_table, load_json, read_coco_json
from detkit.data.readers.records import DetectionRecords, PackedTargets, Records
from detkit.ops.xywh import xywh_to_xyxy

__all__ = ["CocoReader", "read_coco_categories"]


def read_coco_categories(ann_file: str | Path) -> list[dict[str, Any]]:
    """The ``categories`` of a COCO json sorted by ascending id (the contiguous label order).

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        AnnotationError: The file is not a COCO json with categories, or a category lacks its ``id``
            or ``name`` (named), or two share an id.
    """
    ann_file = Path(ann_file)
    return _categories(load_json(ann_file), ann_file)


def _categories(data: Any, ann_file: Path) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not data.get("categories"):
        raise AnnotationError(f"{ann_file} has no 'categories' list; is it a COCO instances json?")
    problems = AnnotationProblems(ann_file)
    categories = [c for _, c in checked_entries(data, "categories", ann_file, problems)]
    problems.raise_if_any()
    return sorted(categories, key=lambda c: c["id"])


def _missing_image(images_dir: Path, files: list[str]) -> int | None:
    """Index of the first of ``files`` (relative to ``images_dir``) that is not a file, else ``None``.

    One listing of the folder answers for most names; a name it does not hold (a subfolder,
    a case-insensitive file system) is asked of the file system itself.
    """
    with os.scandir(images_dir) as listing:
        listed = {entry.name for entry in listing if entry.is_file()}
    for k, name in enumerate(files):
        if name not in listed and not (images_dir / name).is_file():
            return k
    return None


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
    Boxes are kept as flat arrays (:class:`~detkit.data.readers.records.PackedTargets`), so
    loader workers share them: COCO train2017 parses in about the time and memory pycocotools
    takes (``python -m tools.bench_scale parse``).

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
                ``iscrowd`` when given), named with its id and the field; an image or annotation id
                beyond 64 bits; duplicate category, image or annotation ids; an annotation of an
                unknown image or category; no images.
        """
        super().__init__(images, skip_unreadable)
        self.ann_file = Path(annotations)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(annotations='{self.ann_file}')"

    def _parse(self) -> Records:
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder not found: {self.images_dir} (for {self.ann_file})")
        data, annotation_columns = read_coco_json(self.ann_file)
        issues = DatasetIssues(source=str(self.ann_file))
        categories = _categories(data, self.ann_file)
        class_names = [str(c["name"]) for c in categories]
        category_ids = [int(c["id"]) for c in categories]
        if category_ids != list(range(len(category_ids))):
            issues.non_contiguous_ids = list(category_ids)

        problems = AnnotationProblems(self.ann_file)
        images = column_table(data, "images", self.ann_file, problems)
        if annotation_columns is None:
            annotations = column_table(data, "annotations", self.ann_file, problems)
        else:
            check_unique_ids(annotation_columns, "annotations", self.ann_file)
            annotations = annotation_columns
        del data  # the columns hold what is needed; free the parsed json before grouping
        problems.raise_if_any()
        assert images is not None and annotations is not None  # None only with problems, raised above
        if not images["files"]:
            raise AnnotationError(
                f"{self.ann_file}: no images ('images' is missing or empty; {len(category_ids)} categories, "
                f"{len(annotations['image_id'])} annotations): a dataset needs images"
            )
        files: list[str] = images["files"]
        missing = _missing_image(self.images_dir, files)
        if missing is not None:
            raise FileNotFoundError(
                f"image {self.images_dir / files[missing]} listed in {self.ann_file} "
                f"(image id {images['ids'][missing]}) does not exist"
            )
        image_index, labels = _lookup(images, annotations, category_ids, self.ann_file, problems)
        targets = _pack(annotations, image_index, labels, images, issues)
        issues.warn(stacklevel=6)
        return Records(
            files=files,
            sizes=list(zip(map(int, images["heights"]), map(int, images["widths"]))),
            targets=targets,
            class_names=class_names,
            issues=issues,
            image_ids=images["ids"],
            category_ids=category_ids,
        )



def _lookup(
    images: dict[str, Any], annotations: dict[str, np.ndarray], category_ids: list[int], ann_file: Path,
    problems: AnnotationProblems,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each annotation's image index and label, int64 ``[M]`` (``category_ids`` ascending).

    Raises:
        AnnotationError: Annotations of an image id not in ``images`` or of an unknown category
            (each named, with its image's file for the latter).
    """
    try:
        known_ids = np.asarray(category_ids, dtype=np.int64)
    except OverflowError:
        raise AnnotationError(f"{ann_file}: category ids must fit in 64 bits, got {category_ids}") from None
    by_id = np.argsort(images["id"], kind="stable")
    sorted_ids = images["id"][by_id]
    image_id, category_id = annotations["image_id"], annotations["category_id"]
    at = np.minimum(np.searchsorted(sorted_ids, image_id), len(sorted_ids) - 1)
    labels = np.minimum(np.searchsorted(known_ids, category_id), len(known_ids) - 1)
    known_image, known_category = sorted_ids[at] == image_id, known_ids[labels] == category_id
    image_index = by_id[at]
    for k in np.flatnonzero(~(known_image & known_category)):  # in json order, as the messages name them
        name = f"annotation {annotations['id'][k]}" if annotations["has_id"][k] else f"annotations[{k}]"
        if not known_image[k]:
            problems.add("annotations of an image id not in 'images'", f"{name} (image id {image_id[k]})")
        else:
            where = f"{name} of {images['files'][image_index[k]]}"
            problems.add(f"annotations of unknown category ids (known: {category_ids})",
                         f"{where} (category id {category_id[k]})")  # fmt: skip
    problems.raise_if_any()
    return image_index, labels


def _pack(
    annotations: dict[str, np.ndarray], image_index: np.ndarray, labels: np.ndarray, images: dict[str, Any],
    issues: DatasetIssues,
) -> PackedTargets:  # fmt: skip
    """Group the boxes by image (xywh -> clipped xyxy), recording what was clipped, dropped, crowd, background.

    Boxes keep the json's order within each image, and ``issues`` lists them image by image.
    """
    files = images["files"]
    order = np.argsort(image_index, kind="stable")  # image-major, json order within an image
    image_of = image_index[order]
    boxes = xywh_to_xyxy(annotations["bbox"][order])  # [M, 4] xyxy float64
    original = boxes.copy()
    np.clip(boxes[:, 0::2], 0.0, images["width"][image_of, None], out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, images["height"][image_of, None], out=boxes[:, 1::2])
    keep = (boxes[:, 2:] > boxes[:, :2]).all(axis=1) & (original[:, 2:] > original[:, :2]).all(axis=1)
    clipped = keep & (boxes != original).any(axis=1)
    del original
    ann_id, has_id = annotations["id"][order], annotations["has_id"][order]

    def names(rows: np.ndarray) -> list[str]:
        return [f"annotation {ann_id[r] if has_id[r] else None} in {files[image_of[r]]}" for r in rows]

    issues.clipped += names(np.flatnonzero(clipped))
    issues.dropped += names(np.flatnonzero(~keep))
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area = annotations["area"][order]
    area = np.where(area == 0, box_area, area)  # no area (or 0): the clipped box's
    iscrowd = annotations["iscrowd"][order]
    issues.ignored += names(np.flatnonzero(keep & (iscrowd == 1)))
    counts = np.bincount(image_of[keep], minlength=len(files))
    issues.background_images += [files[k] for k in np.flatnonzero(counts == 0)]
    fields = {
        "boxes": boxes[keep].astype(np.float32),
        "labels": labels[order][keep],
        "iscrowd": iscrowd[keep],
        "area": area[keep].astype(np.float32),
    }
    return PackedTargets(fields, np.concatenate(([0], np.cumsum(counts))))
