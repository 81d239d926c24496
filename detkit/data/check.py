"""Dataset checking: a ``DataReport`` of counts and problems per split, as text and as a PNG of plots."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from detkit.data.images import ImageReadError
from detkit.data.readers.base import DatasetIssues, examples
from detkit.data.readers.records import DetectionRecords

__all__ = ["DataReport", "check_dataset", "plot_reports"]


@dataclass
class DataReport:
    """Counts and problems of one dataset split, as found by its reader and by reading its images.

    ``errors`` make ``detkit check-data`` fail; ``warnings`` are problems the readers repaired.
    """

    split: str
    source: str = ""
    images: int = 0
    boxes: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    ignored: int = 0
    background_images: int = 0
    duplicate_ids: list[Any] = field(default_factory=list)
    issues: DatasetIssues = field(default_factory=DatasetIssues)
    unreadable: list[str] = field(default_factory=list)
    box_sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # [N, 2] (w, h) of positive boxes
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A human-readable multi-line summary."""
        i = self.issues
        classes = ", ".join(f"{name}: {n}" for name, n in self.per_class.items()) or "-"
        ids = f"non-contiguous {i.non_contiguous_ids} (mapped to 0..K-1)" if i.non_contiguous_ids else "contiguous"
        rows = [
            ("images", self.images),
            ("boxes", f"{self.boxes} (+{self.ignored} crowd/difficult, ignored in training and evaluation)"),
            ("per class", classes),
            ("background images", self.background_images),
            ("labels without images", _count(i.labels_without_images)),
            ("out-of-bounds (clipped)", _count(i.clipped)),
            ("degenerate (dropped)", _count(i.dropped)),
            ("duplicate image ids", _count([str(d) for d in self.duplicate_ids])),
            ("unreadable images", _count(self.unreadable)),
            ("category ids", ids),
        ]
        lines = [f"[{self.split}] {self.source}"] + [f"  {name:<22} {value}" for name, value in rows]
        lines += [f"  WARNING: {w}" for w in self.warnings] + [f"  ERROR: {e}" for e in self.errors]
        return "\n".join(lines)


def _count(items: list[str]) -> str:
    return f"{len(items)}" + (f"  e.g. {examples(items)}" if items else "")


def check_dataset(dataset: Dataset, split: str = "data", read_images: bool = True) -> DataReport:
    """Collect the :class:`DataReport` of a reader (or any raw detection dataset).

    Loads the reader if it is not loaded yet (its format errors are raised). Targets come from
    ``dataset.target(i)`` when the dataset has it (no image decoding) and from ``dataset[i]``
    otherwise; with ``read_images`` every image of a file-backed reader
    (:class:`~detkit.data.readers.records.DetectionRecords`) is fully decoded, so truncated or
    unreadable files are found. Repairs the reader made (clipping, dropping, unmatched label files)
    come from ``dataset.issues``.
    """
    report_images = len(dataset)  # type: ignore[arg-type]  # loads a lazy reader
    issues = getattr(dataset, "issues", None) or DatasetIssues()
    class_names = list(getattr(dataset, "class_names", []))
    report = DataReport(split=split, source=issues.source or type(dataset).__name__, issues=issues)
    report.images = report_images
    labels: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    ids: list[Any] = []
    records = isinstance(dataset, DetectionRecords)
    for k in range(report.images):
        if records:
            target = dataset.target(k)
            if read_images:
                try:
                    dataset.load_image(k)
                except ImageReadError as error:
                    report.unreadable.append(f"{target['file_name']} ({error})")
        else:
            target = dataset[k][1]
        crowd = np.asarray(target["iscrowd"]).astype(bool)
        boxes = np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4)
        labels.append(np.asarray(target["labels"])[~crowd])
        sizes.append(boxes[~crowd, 2:] - boxes[~crowd, :2])
        report.ignored += int(crowd.sum())
        report.background_images += int(not (~crowd).any())
        ids.append(target["image_id"])
    all_labels = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    report.boxes = len(all_labels)
    counts = Counter(all_labels.tolist())
    names = class_names or [str(c) for c in sorted(counts)]
    report.per_class = {name: counts.get(c, 0) for c, name in enumerate(names)}
    report.box_sizes = np.concatenate(sizes) if sizes else np.zeros((0, 2))
    report.duplicate_ids = sorted(i for i, n in Counter(ids).items() if n > 1)
    if report.images == 0:
        report.errors.append("empty dataset: no images")
    if report.duplicate_ids:
        report.errors.append(f"duplicate image ids: {examples([str(i) for i in report.duplicate_ids])}")
    found = {u.split(" (", 1)[0] for u in report.unreadable}
    report.unreadable += [f"{u} (skipped by the reader)" for u in issues.unreadable if u not in found]
    unreadable = report.unreadable
    if unreadable:
        report.errors.append(f"{len(unreadable)} unreadable images: {examples(unreadable)}")
    if report.images and not report.boxes:
        report.errors.append("no boxes at all (only background images)")
    unused = [n for n, c in report.per_class.items() if c == 0]
    if unused and report.boxes:
        report.warnings.append(f"classes without boxes: {examples(unused)}")
    for items, what in (
        (issues.clipped, "boxes clipped to their image"),
        (issues.dropped, "zero/negative-size boxes dropped"),
        (issues.labels_without_images, "label files without an image"),
    ):
        if items:
            report.warnings.append(f"{len(items)} {what}: {examples(items)}")
    return report


def plot_reports(reports: list[DataReport], path: str | Path) -> Path:
    """Write a PNG: per split, boxes per class (bars) and histograms of box width and height (pixels)."""
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, no global figure list

    fig = Figure(figsize=(11, 3.2 * len(reports)))
    axes = fig.subplots(len(reports), 2, squeeze=False)
    for (bars, hist), report in zip(axes, reports):
        names, counts = list(report.per_class), list(report.per_class.values())
        bars.bar(range(len(names)), counts, color="tab:blue")
        bars.set_xticks(range(len(names)), names, rotation=45 if len(names) > 6 else 0, ha="right", fontsize=8)
        bars.set_title(f"{report.split}: boxes per class ({report.boxes} boxes, {report.images} images)")
        sizes = report.box_sizes
        if len(sizes):
            top = max(float(sizes.max()), 1.0)
            bins = np.linspace(0, top, 40)
            hist.hist(sizes[:, 0], bins=bins, alpha=0.6, label="width")
            hist.hist(sizes[:, 1], bins=bins, alpha=0.6, label="height")
            hist.legend()
        hist.set_title(f"{report.split}: box size (original pixels)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path
