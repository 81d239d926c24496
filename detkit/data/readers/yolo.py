"""Ultralytics-style YOLO reader: image folders with one ``class cx cy w h`` (normalised) txt per image."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from detkit.data.readers.base import AnnotationError, AnnotationProblems, DatasetIssues, examples
from detkit.data.readers.records import DetectionRecords, Records, empty_target, sanitize_boxes

__all__ = ["YoloReader", "default_labels_dir", "read_yolo_class_names"]

_ABOVE_ONE = "label lines with coordinates above 1 — absolute pixels? YOLO labels are normalised to 0..1"
_TOLERANCE = 0.01  # exporters that round or overshoot a little: such boxes are clipped (counted warning)


def read_yolo_class_names(class_names: list[str] | str | Path) -> list[str]:
    """Class names from a list, or from the ``names`` of an Ultralytics ``data.yaml`` (list or ``{id: name}``).

    Raises:
        FileNotFoundError: The yaml does not exist.
        AnnotationError: The yaml has no usable ``names``, or an ``nc`` that disagrees with them.
    """
    if isinstance(class_names, (list, tuple)):
        return [str(n) for n in class_names]
    path = Path(class_names)
    if not path.is_file():
        raise FileNotFoundError(f"YOLO data yaml not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict) and names:
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in names):
            raise AnnotationError(f"'names' ids in {path} must be integers, got {list(names)}")
        ids = sorted(names)
        if ids != list(range(len(ids))):
            raise AnnotationError(f"'names' ids in {path} must be 0..{len(ids) - 1}, got {ids}")
        result = [str(names[k]) for k in ids]
    elif isinstance(names, list) and names:
        result = [str(n) for n in names]
    else:
        raise AnnotationError(f"{path} has no 'names' list or mapping; is it an Ultralytics data.yaml?")
    nc = data.get("nc", len(result))
    if nc != len(result) or isinstance(nc, bool):
        raise AnnotationError(f"{path}: 'nc: {nc}' disagrees with its {len(result)} 'names' {examples(result, 5)}")
    return result


def default_labels_dir(images_dir: str | Path) -> Path:
    """``images_dir`` with its last ``images`` component replaced by ``labels`` (the Ultralytics rule)."""
    parts = list(Path(images_dir).parts)
    for k in range(len(parts) - 1, -1, -1):
        if parts[k] == "images":
            parts[k] = "labels"
            return Path(*parts)
    raise ValueError(f"cannot derive the labels folder from {images_dir} (no 'images' folder in the path); give labels")


class YoloReader(DetectionRecords):
    """Images (searched recursively) with YOLO txt labels mirrored under a labels folder.

    Each label line is ``class cx cy w h``, normalised to the image (EXIF orientation applied), or
    ``class x1 y1 x2 y2 ...`` (a segment, whose extent becomes the box). An image without a label
    file, or with an empty one, is a background image; a label file without an image is reported
    (``issues.labels_without_images``) and ignored. Boxes reaching outside the image are clipped and
    boxes of zero or negative size dropped, each counted with one warning. See
    :class:`~detkit.data.readers.records.DetectionRecords` for items and ``skip_unreadable``; an image
    whose header cannot be read is skipped at loading already (with ``skip_unreadable``) since its
    size is needed.

    Attributes:
        labels_dir: The labels folder.
        files: Image paths relative to ``images_dir`` (sorted); ``image_id`` is the index.
        class_names: Class names in label order.
        issues: What was clipped, dropped, unmatched or skipped.
    """

    def __init__(
        self,
        images: str | Path,
        class_names: list[str] | str,
        labels: str | Path | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        """Store the paths (label files and image headers are read on first use).

        Args:
            images: Folder of images (searched recursively).
            class_names: Class names in id order, or the path of an Ultralytics ``data.yaml`` (its ``names``).
            labels: Folder of ``.txt`` labels mirroring ``images``; default: ``images`` with its last
                ``images`` path component replaced by ``labels``.
            skip_unreadable: Skip (count and warn about) unreadable images instead of raising.

        Raises:
            ValueError: No class names, or no ``labels`` and none derivable from ``images``.

        Loading raises:
            FileNotFoundError: A folder or the yaml does not exist.
            AnnotationError: No images, a malformed line, unknown class ids or coordinates above 1
                (absolute pixels; counted, naming file and line), two images sharing one label
                file, or a yaml whose ``nc`` disagrees with its ``names``.

        Loading warns (once each, with a count) about files in ``images`` that are not images by
        their suffix (e.g. ``.tif``), and about a missing derived labels folder (all background).
        """
        super().__init__(images, skip_unreadable)
        if not class_names:
            raise ValueError(f"YoloReader of {self.images_dir} needs class_names (a list or a data.yaml)")
        self._class_names_spec = class_names
        self._labels_given = labels is not None
        self.labels_dir = Path(labels) if labels is not None else default_labels_dir(self.images_dir)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(labels='{self.labels_dir}')"

    def _parse(self) -> Records:
        class_names = read_yolo_class_names(self._class_names_spec)
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"YOLO images folder not found: {self.images_dir}")
        issues = DatasetIssues(source=str(self.labels_dir))
        images = self._list_images(issues, recursive=True, stacklevel=6)
        by_label: dict[str, list[str]] = defaultdict(list)
        for name in images:
            by_label[Path(name).with_suffix(".txt").as_posix()].append(name)
        shared = [f"{label} <- {', '.join(names)}" for label, names in by_label.items() if len(names) > 1]
        if shared:
            raise AnnotationError(
                f"images sharing one label file (duplicate image ids) in {self.images_dir}: {examples(shared)}"
            )
        if self.labels_dir.is_dir():
            labels = {p.relative_to(self.labels_dir).as_posix() for p in self.labels_dir.rglob("*.txt")}
            issues.labels_without_images = sorted(labels - set(by_label) - {"classes.txt"})
        elif self._labels_given:
            raise FileNotFoundError(f"YOLO labels folder not found: {self.labels_dir}")
        else:
            warnings.warn(
                f"no labels folder {self.labels_dir} (derived from {self.images_dir}): all {len(images)} "
                "images are background images; give labels if they are elsewhere",
                stacklevel=6,
            )

        files, sizes, targets = [], [], []
        problems = AnnotationProblems(self.labels_dir)
        for name in images:
            size = self._probe_size(name, issues)
            if size is None:  # unreadable, skipped
                continue
            label_name = Path(name).with_suffix(".txt").as_posix()
            if (self.labels_dir / label_name).is_file():
                target = _read_labels(self.labels_dir, label_name, size, len(class_names), problems, issues)
            else:
                target = empty_target()
            if not len(target["boxes"]):
                issues.background_images.append(name)
            files.append(name)
            sizes.append(size)
            targets.append(target)
        problems.raise_if_any()
        issues.warn(stacklevel=6)
        self._warn_unreadable(issues, stacklevel=6)
        return Records(files=files, sizes=sizes, targets=targets, class_names=class_names, issues=issues)


def _read_labels(
    labels_dir: Path,
    label_name: str,
    size: tuple[int, int],
    num_classes: int,
    problems: AnnotationProblems,
    issues: DatasetIssues,
) -> dict[str, np.ndarray]:
    """Parse ``labels_dir / label_name`` into absolute xyxy boxes.

    Unknown class ids and coordinates above 1 are added to ``problems`` (``"a.txt:3"``, raised
    for the whole dataset by the caller); a line that is not ``class cx cy w h`` (or a segment) raises.

    Raises:
        AnnotationError: A line that is not finite numbers, or of the wrong count, naming file and line.
    """
    path = labels_dir / label_name
    height, width = size
    rows: list[list[float]] = []
    labels: list[int] = []
    names: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{label_name}:{number}"
        try:
            values = [float(v) for v in fields]
        except ValueError as error:
            raise AnnotationError(f"{path} line {number}: not numbers: {line!r}") from error
        if not all(math.isfinite(v) for v in values):
            raise AnnotationError(f"{path} line {number}: not finite numbers: {line!r}")
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        elif len(values) >= 7 and len(values) % 2 == 1:  # a segment: class x1 y1 x2 y2 ...
            xy = np.asarray(values[1:]).reshape(-1, 2)
            rows.append([*xy.min(axis=0), *xy.max(axis=0)])
        else:
            raise AnnotationError(f"{path} line {number}: expected 'class cx cy w h', got {line!r}")
        if max(values[1:]) > 1 + _TOLERANCE:
            problems.add(_ABOVE_ONE, f"{where} (max {max(values[1:]):g})")
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            problems.add(f"labels with unknown class ids (known: 0..{num_classes - 1})", f"{where} class {fields[0]}")
        labels.append(int(cls))
        names.append(where)
    if not rows:
        return empty_target()
    boxes = np.asarray(rows, dtype=np.float64) * np.array([width, height, width, height])
    keep = sanitize_boxes(boxes, width, height, names, issues)
    boxes = boxes[keep]
    return {
        "boxes": boxes.astype(np.float32),
        "labels": np.asarray(labels, dtype=np.int64)[keep],
        "iscrowd": np.zeros(len(boxes), dtype=np.int64),
        "area": ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32),
    }
