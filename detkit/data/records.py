"""What a reader found in a dataset (``DatasetIssues``), box sanitising and the shared file-dataset base."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from detkit.data.images import ImageReadError, read_image

__all__ = ["DatasetIssues", "DetectionRecords", "sanitize_boxes", "empty_target"]

_EXAMPLES = 3  # how many offending items a message names


def examples(items: list[str], n: int = _EXAMPLES) -> str:
    """``"a, b, c (and 4 more)"`` for messages."""
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


@dataclass
class DatasetIssues:
    """Everything a reader noticed while loading annotations, for warnings and ``detkit check-data``.

    Each list holds one human-readable location per case (``"raccoon-1.xml object 2"``).

    Attributes:
        clipped: Boxes reaching outside their image, clipped to it (kept).
        dropped: Boxes with zero or negative size (after clipping), dropped.
        labels_without_images: Annotation files with no matching image (ignored).
        background_images: Images with no annotation file or no boxes (kept, as negatives).
        ignored: Crowd / ``difficult`` boxes, kept with ``iscrowd=1`` (not positives).
        non_contiguous_ids: Category ids when they are not ``0..K-1`` (mapped to contiguous labels).
        unreadable: Images that could not be read and were skipped (``skip_unreadable=True``).
    """

    source: str = ""
    clipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    labels_without_images: list[str] = field(default_factory=list)
    background_images: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    non_contiguous_ids: list[int] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def warn(self, stacklevel: int = 3) -> None:
        """One warning per kind of repaired problem, counting it and naming a few examples."""
        where = f" in {self.source}" if self.source else ""
        for items, what in (
            (self.clipped, "boxes extending outside their image clipped"),
            (self.dropped, "boxes with zero or negative size (after clipping) dropped"),
            (self.labels_without_images, "label files without an image ignored"),
        ):
            if items:
                warnings.warn(f"{len(items)} {what}{where} (e.g. {examples(items)})", stacklevel=stacklevel)


def sanitize_boxes(
    raw: np.ndarray, width: float, height: float, names: list[str], issues: DatasetIssues
) -> np.ndarray:
    """Clip ``raw`` xyxy boxes ``[N, 4]`` to the image and return the mask ``[N]`` of boxes to keep.

    ``raw`` is clipped in place. Boxes that had a non-positive width or height as written, or have
    one after clipping, are dropped; ``names[k]`` (where box ``k`` came from) is added to
    ``issues.clipped`` / ``issues.dropped``.
    """
    original = raw.copy()
    np.clip(raw, 0.0, np.array([width, height, width, height], dtype=raw.dtype), out=raw)
    valid = (raw[:, 2:] > raw[:, :2]).all(axis=1) & (original[:, 2:] > original[:, :2]).all(axis=1)
    clipped = valid & (raw != original).any(axis=1)
    issues.clipped += [names[k] for k in np.flatnonzero(clipped)]
    issues.dropped += [names[k] for k in np.flatnonzero(~valid)]
    return valid


def empty_target() -> dict[str, np.ndarray]:
    """Per-box fields of an image without boxes."""
    return {
        "boxes": np.zeros((0, 4), dtype=np.float32),
        "labels": np.zeros(0, dtype=np.int64),
        "iscrowd": np.zeros(0, dtype=np.int64),
        "area": np.zeros(0, dtype=np.float32),
    }


class DetectionRecords(Dataset):
    """Base of file-backed detection datasets: image files with pre-parsed per-box targets.

    Subclasses fill ``files`` (paths relative to ``images_dir``), ``sizes`` (``(height, width)`` as
    annotated, or ``None`` if unknown), ``targets`` (numpy per-box fields), ``class_names`` and
    ``issues``. Items are ``(image uint8 [H, W, 3] RGB, target)`` with ``boxes`` float32 ``[N, 4]``
    xyxy absolute, ``labels`` / ``iscrowd`` int64 ``[N]``, ``area`` float32 ``[N]``, ``image_id``
    (the index) and ``file_name``.

    With ``skip_unreadable=True`` an image that cannot be read is counted in ``issues.unreadable``,
    warned about (naming it and the running count), and replaced by the next readable item, so
    a loader never crashes on it and it never disappears silently; otherwise
    :class:`~detkit.data.images.ImageReadError` names the file.
    """

    images_dir: Path
    files: list[str]
    sizes: list[tuple[int, int] | None]
    targets: list[dict[str, np.ndarray]]
    class_names: list[str]
    issues: DatasetIssues
    skip_unreadable: bool = False

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.files)

    def target(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without reading its image."""
        target: dict[str, Any] = {k: v.copy() for k, v in self.targets[index].items()}
        target["image_id"] = index
        target["file_name"] = self.files[index]
        return target

    def _read(self, index: int) -> np.ndarray:
        path = self.images_dir / self.files[index]
        image = read_image(path)
        size = self.sizes[index]
        if size is not None and image.shape[:2] != size:
            raise ImageReadError(
                f"image {path} is {image.shape[1]}x{image.shape[0]} (w x h, after EXIF orientation) but its "
                f"annotation says {size[1]}x{size[0]}"
            )
        return image

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of {len(self)} images")
        index %= len(self)
        for attempt in range(len(self)):
            k = (index + attempt) % len(self)
            try:
                return self._read(k), self.target(k)
            except ImageReadError as error:
                if not self.skip_unreadable:
                    raise
                if self.files[k] not in self.issues.unreadable:
                    self.issues.unreadable.append(self.files[k])
                warnings.warn(
                    f"skipping unreadable image ({len(self.issues.unreadable)} skipped so far in this process; "
                    f"using the next image instead): {error}",
                    stacklevel=2,
                )
        raise ImageReadError(f"no readable image in {self.images_dir} ({len(self)} tried)")
