"""Ultralytics-style YOLO reader: image folders with one ``class cx cy w h`` (normalised) txt per image."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from detkit.data.images import IMAGE_EXTENSIONS
from detkit.data.readers.base import DatasetIssues, examples
from detkit.data.readers.records import DetectionRecords, Records, empty_target, sanitize_boxes

__all__ = ["YoloReader", "default_labels_dir", "read_yolo_class_names"]


def read_yolo_class_names(class_names: list[str] | str | Path) -> list[str]:
    """Class names from a list, or from the ``names`` of an Ultralytics ``data.yaml`` (list or ``{id: name}``).

    Raises:
        FileNotFoundError: The yaml does not exist.
        ValueError: The yaml has no usable ``names``.
    """
    if isinstance(class_names, (list, tuple)):
        return [str(n) for n in class_names]
    path = Path(class_names)
    if not path.is_file():
        raise FileNotFoundError(f"YOLO data yaml not found: {path}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        ids = sorted(int(k) for k in names)
        if ids != list(range(len(ids))):
            raise ValueError(f"'names' ids in {path} must be 0..{len(ids) - 1}, got {ids}")
        return [str(names[k]) for k in ids]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise ValueError(f"{path} has no 'names' list or mapping; is it an Ultralytics data.yaml?")


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
            ValueError: No images, a malformed line, an unknown class id, or two images sharing one
                label file.
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
        images = sorted(
            p.relative_to(self.images_dir).as_posix()
            for p in self.images_dir.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not images:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {self.images_dir}")
        by_label: dict[str, list[str]] = defaultdict(list)
        for name in images:
            by_label[Path(name).with_suffix(".txt").as_posix()].append(name)
        shared = [f"{label} <- {', '.join(names)}" for label, names in by_label.items() if len(names) > 1]
        if shared:
            raise ValueError(
                f"images sharing one label file (duplicate image ids) in {self.images_dir}: {examples(shared)}"
            )
        if self.labels_dir.is_dir():
            labels = {p.relative_to(self.labels_dir).as_posix() for p in self.labels_dir.rglob("*.txt")}
            issues.labels_without_images = sorted(labels - set(by_label) - {"classes.txt"})
        elif self._labels_given:
            raise FileNotFoundError(f"YOLO labels folder not found: {self.labels_dir}")

        files, sizes, targets = [], [], []
        unknown: list[str] = []
        for name in images:
            size = self._probe_size(name, issues)
            if size is None:  # unreadable, skipped
                continue
            label_file = self.labels_dir / Path(name).with_suffix(".txt")
            if label_file.is_file():
                target = _read_labels(label_file, size, len(class_names), unknown, issues)
            else:
                target = empty_target()
            if not len(target["boxes"]):
                issues.background_images.append(name)
            files.append(name)
            sizes.append(size)
            targets.append(target)
        if unknown:
            raise ValueError(
                f"{len(unknown)} labels with unknown class ids (known: 0..{len(class_names) - 1}) in "
                f"{self.labels_dir}: {examples(unknown)}"
            )
        if not files:
            raise ValueError(f"no readable images in {self.images_dir} ({len(issues.unreadable)} unreadable)")
        issues.warn(stacklevel=6)
        self._warn_unreadable(issues, stacklevel=6)
        return Records(files=files, sizes=sizes, targets=targets, class_names=class_names, issues=issues)


def _read_labels(
    path: Path, size: tuple[int, int], num_classes: int, unknown: list[str], issues: DatasetIssues
) -> dict[str, np.ndarray]:
    """Parse one label file into absolute xyxy boxes; unknown class ids are appended to ``unknown``."""
    height, width = size
    rows: list[list[float]] = []
    labels: list[int] = []
    names: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path.name}:{number}"
        try:
            values = [float(v) for v in fields]
        except ValueError as error:
            raise ValueError(f"{path} line {number}: not numbers: {line!r}") from error
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        elif len(values) >= 7 and len(values) % 2 == 1:  # a segment: class x1 y1 x2 y2 ...
            xy = np.asarray(values[1:]).reshape(-1, 2)
            rows.append([*xy.min(axis=0), *xy.max(axis=0)])
        else:
            raise ValueError(f"{path} line {number}: expected 'class cx cy w h', got {line!r}")
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            unknown.append(f"{where} class {fields[0]}")
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
