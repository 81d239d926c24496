"""``Reader``: what every dataset format provides; ``DatasetIssues`` (repaired) and ``AnnotationError`` (refused)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

__all__ = ["AnnotationError", "AnnotationProblems", "DatasetIssues", "Reader", "examples", "pixels_by_image_id"]

_EXAMPLES = 3  # how many offending items a message names


def examples(items: list[str], n: int = _EXAMPLES) -> str:
    """``"a, b, c (and 4 more)"`` for messages."""
    more = f" (and {len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


class AnnotationError(ValueError):
    """An annotation file (or an entry of one) that a reader refuses; the message names the file and the entry."""


class AnnotationProblems:
    """Malformed entries collected while parsing, raised together as one :class:`AnnotationError`.

    Each kind of problem (``"annotations without 'bbox'"``) is counted and a few of its entries
    named (``"annotation 7"``), so a systematic mistake reads as one line, not the first of thousands.
    """

    def __init__(self, source: str | Path) -> None:
        """Start with no problems.

        Args:
            source: The file or folder the entries come from (starts the message).
        """
        self.source = str(source)
        self.found: dict[str, list[str]] = {}

    def add(self, what: str, where: str) -> None:
        """Record one entry ``where`` with the problem ``what``."""
        self.found.setdefault(what, []).append(where)

    def __bool__(self) -> bool:
        return bool(self.found)

    def raise_if_any(self) -> None:
        """Raise one :class:`AnnotationError` counting each kind of problem and naming a few entries.

        Raises:
            AnnotationError: Anything was added.
        """
        if self.found:  # "2 images without 'id' in a.json: images[0], images[3]; 1 annotations without ..."
            kinds = [f"{len(items)} {what}" + (f" in {self.source}" if not k else "") + f": {examples(items)}"
                     for k, (what, items) in enumerate(self.found.items())]  # fmt: skip
            raise AnnotationError("; ".join(kinds))


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
        not_images: Files in an image folder whose suffix is not an image extension (skipped, warned about).
    """

    source: str = ""
    clipped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    labels_without_images: list[str] = field(default_factory=list)
    background_images: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    non_contiguous_ids: list[int] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)

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


class Reader(Dataset):
    """A detection dataset in one format: ``(image, target)`` items in original pixels, and its classes.

    Items are ``(image uint8 [H, W, 3] RGB, target)`` with numpy ``boxes`` float32 ``[N, 4]`` xyxy
    absolute (inside the image, positive size), ``labels`` / ``iscrowd`` int64 ``[N]``, ``area``
    float32 ``[N]``, ``image_id`` and ``file_name``.

    A reader is lazy: ``__init__`` only stores and checks its arguments; files are listed and
    annotations parsed on first use (``len``, an item, ``class_names``, ... or :meth:`load`), once.
    A new format is one subclass (one file under ``detkit/data/readers/``).

    Attributes:
        class_names: Class names in label order; empty for unlabelled data (an image folder).
        category_ids: The format's own id of each label (COCO category ids), else ``None``.
        issues: What the reader repaired or skipped while loading (for warnings and ``detkit check-data``).
    """

    def load(self) -> Reader:
        """Parse the annotations now (otherwise done on first use); returns ``self``.

        Raises:
            FileNotFoundError: A file or folder of the dataset is missing.
            AnnotationError: A malformed annotation (a ``ValueError``), naming the file and the entry.
        """
        return self

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        raise NotImplementedError

    @property
    def category_ids(self) -> list[int] | None:
        """The format's own id of each label, or ``None`` (labels are the ids)."""
        return None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def issues(self) -> DatasetIssues:
        """What the reader repaired or skipped (nothing, unless the format reads files)."""
        return DatasetIssues(source=repr(self))

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def target(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` (without decoding its image where the format allows)."""
        return self[index][1]


def pixels_by_image_id(reader: Reader) -> Callable[[int], Any]:
    """``image_id -> uint8 [H, W, 3]`` pixels of a reader's items, ``None`` for an id it does not hold
    (what report galleries draw on). Readers with ``image_ids`` are looked up by them; others use the
    item index as the id."""
    ids = getattr(reader, "image_ids", None)
    index = {int(i): k for k, i in enumerate(ids)} if ids is not None else None

    def pixels(image_id: int) -> Any:
        k = index.get(image_id) if index is not None else image_id
        if k is None or not 0 <= k < len(reader):
            return None
        image, target = reader[k]
        return image if int(target["image_id"]) == image_id else None

    return pixels
