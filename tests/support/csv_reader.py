"""A minimal new dataset format, written outside detkit: one csv of ``file,x1,y1,x2,y2,class`` rows.

``CsvReader`` is the whole format: a :class:`~detkit.data.DetectionRecords` subclass implementing
``_parse``. It is importable as ``csv_reader.CsvReader`` once ``tests/support`` is on the path, so a
config's ``data:`` block can name it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from detkit.data import DatasetIssues, DetectionRecords, Records
from detkit.data.readers.records import empty_target, sanitize_boxes

__all__ = ["CsvReader"]

_COLUMNS = ("file", "x1", "y1", "x2", "y2", "class")


class CsvReader(DetectionRecords):
    """Images listed in one csv with a header ``file,x1,y1,x2,y2,class``: one row per box, pixel xyxy.

    A row with empty box fields lists a background image. Images are taken in order of first
    appearance; their sizes come from the image headers.
    """

    def __init__(
        self,
        images: str | Path,
        annotations: str | Path,
        class_names: list[str] | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        """Store the paths (the csv is parsed on first use).

        Args:
            images: Folder the ``file`` column is relative to.
            annotations: The csv file.
            class_names: Class names in label order; ``None``: the csv's class names, sorted.
            skip_unreadable: Skip (count and warn about) unreadable images instead of raising.
        """
        super().__init__(images, skip_unreadable)
        self.annotations = Path(annotations)
        self._class_names_given = list(class_names) if class_names is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(annotations='{self.annotations}')"

    def _parse(self) -> Records:
        if not self.annotations.is_file():
            raise FileNotFoundError(f"csv annotations not found: {self.annotations}")
        with self.annotations.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != _COLUMNS:
                raise ValueError(
                    f"{self.annotations} must have the header {','.join(_COLUMNS)}, got {reader.fieldnames}"
                )
            rows = list(reader)
        boxed = [r for r in rows if r["class"]]
        class_names = self._class_names_given or sorted({r["class"] for r in boxed})
        label_of = {name: k for k, name in enumerate(class_names)}
        unknown = sorted({r["class"] for r in boxed} - set(label_of))
        if unknown:
            raise ValueError(f"{self.annotations}: unknown classes {unknown} (known: {class_names})")

        issues = DatasetIssues(source=str(self.annotations))
        records = Records(files=[], sizes=[], targets=[], class_names=list(class_names), issues=issues)
        for name in dict.fromkeys(r["file"] for r in rows):
            size = self._probe_size(name, issues)
            if size is None:  # unreadable, skipped
                continue
            lines = [(k, r) for k, r in enumerate(rows, start=2) if r["file"] == name and r["class"]]
            if not lines:
                issues.background_images.append(name)
                target = empty_target()
            else:
                boxes = np.asarray([[float(r[c]) for c in _COLUMNS[1:5]] for _, r in lines], dtype=np.float64)
                where = [f"{self.annotations.name}:{k}" for k, _ in lines]  # csv line of each box
                keep = sanitize_boxes(boxes, size[1], size[0], where, issues)
                boxes = boxes[keep]
                target = {
                    "boxes": boxes.astype(np.float32),
                    "labels": np.asarray([label_of[r["class"]] for _, r in lines], dtype=np.int64)[keep],
                    "iscrowd": np.zeros(len(boxes), dtype=np.int64),
                    "area": ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32),
                }
            records.files.append(name)
            records.sizes.append(size)
            records.targets.append(target)
        if not records.files:
            raise ValueError(f"no readable images listed in {self.annotations}")
        issues.warn(stacklevel=6)
        self._warn_unreadable(issues, stacklevel=6)
        return records
