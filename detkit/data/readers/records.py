"""The shared base of file-backed readers (``DetectionRecords``), box sanitising and empty targets."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.images import IMAGE_EXTENSIONS, ImageReadError, image_size, read_image
from detkit.data.readers.base import AnnotationError, DatasetIssues, Reader, examples

__all__ = ["DetectionRecords", "PackedTargets", "Records", "empty_target", "sanitize_boxes"]

# Suffixes of files that sit next to images without being meant as images (not worth a warning).
_NOT_IMAGE_SUFFIXES = frozenset({"", ".txt", ".json", ".yaml", ".yml", ".csv", ".xml", ".cache", ".md"})


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


class PackedTargets(Sequence[dict[str, np.ndarray]]):
    """Per-image targets kept as flat per-box arrays and offsets, one small dict built per access.

    A list of one dict of four arrays per image costs about 600 bytes of Python objects per
    image, and DataLoader workers copy every page whose reference counts they touch; flat arrays
    (as detectron2 serialises its dataset lists) are a few contiguous buffers that forked workers
    share. Item ``i`` is ``{name: array[offsets[i]:offsets[i + 1]]}`` for each field: views, so
    copy before changing them (:meth:`DetectionRecords.target` does).

    Attributes:
        fields: Per-box arrays (``boxes`` ``[M, 4]``, ``labels``, ``iscrowd``, ``area`` ``[M]``), image-major.
        offsets: int64 ``[N + 1]``: image ``i``'s boxes are rows ``offsets[i]:offsets[i + 1]``.
    """

    def __init__(self, fields: dict[str, np.ndarray], offsets: np.ndarray) -> None:
        """Wrap the flat arrays.

        Args:
            fields: Per-box arrays, all with the same first dimension ``M`` (boxes of image 0 first).
            offsets: Non-decreasing ``[N + 1]`` row offsets from 0 to ``M``.

        Raises:
            ValueError: ``offsets`` does not run from 0 to ``M``, or the fields differ in length.
        """
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0 or (np.diff(offsets) < 0).any():
            raise ValueError(f"offsets must be a non-decreasing 1-d array starting at 0, got {offsets!r:.80}")
        lengths = {name: len(array) for name, array in fields.items()}
        if any(length != offsets[-1] for length in lengths.values()):
            raise ValueError(f"every field needs offsets[-1] = {offsets[-1]} rows, got {lengths}")
        self.fields = dict(fields)
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"target index {index} out of range for {len(self)} images")
        index %= len(self)
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        return {name: array[start:stop] for name, array in self.fields.items()}


@dataclass
class Records:
    """What a file-backed reader parsed, one entry per image (in item order).

    Attributes:
        files: Image paths relative to the reader's ``images_dir``.
        sizes: ``(height, width)`` as annotated, or ``None`` where the annotation does not say.
        targets: Numpy per-box fields (``boxes``, ``labels``, ``iscrowd``, ``area``) in original pixels:
            a list a reader appends to, or (large datasets) a :class:`PackedTargets`.
        class_names: Class names in label order.
        issues: What was repaired or skipped.
        image_ids: The format's image ids; ``None``: the index is the id.
        category_ids: The format's id of each label, or ``None``.
    """

    files: list[str]
    sizes: list[tuple[int, int] | None]
    targets: Sequence[dict[str, np.ndarray]]
    class_names: list[str]
    issues: DatasetIssues
    image_ids: list[int] | None = None
    category_ids: list[int] | None = None


class DetectionRecords(Reader):
    """Base of file-backed readers: image files with per-box targets parsed once, on first use.

    Subclasses implement :meth:`_parse` (list the files, parse the annotations, warn about what
    they repaired) and ``__repr__``; a format that lists an image folder does it with
    :meth:`_list_images`; a format that does not annotate image sizes reads them with
    :meth:`_probe_size` and reports the images it skipped with :meth:`_warn_unreadable`. A dataset
    of no images is an :class:`~detkit.data.readers.base.AnnotationError`, never an empty reader.
    Items are ``(image uint8 [H, W, 3] RGB, target)`` as in
    :class:`~detkit.data.readers.base.Reader`, with ``image_id`` (the format's id, else the index)
    and ``file_name`` (relative to ``images_dir``); an image whose size differs from its
    annotation raises :class:`~detkit.data.images.ImageReadError`.

    With ``skip_unreadable=True`` an image that cannot be read is counted in ``issues.unreadable``,
    warned about (naming it and the running count), and replaced by the next readable item, so
    a loader never crashes on it and it never disappears silently; otherwise
    :class:`~detkit.data.images.ImageReadError` names the file.

    Attributes:
        images_dir: Folder the ``files`` are relative to.
        skip_unreadable: Skip unreadable images instead of raising (may be changed at any time).
    """

    def __init__(self, images_dir: str | Path, skip_unreadable: bool = False) -> None:
        """Store the image folder (nothing is read until first use).

        Args:
            images_dir: Folder that the image file names are relative to.
            skip_unreadable: Skip (count and warn about) unreadable images instead of raising.
        """
        self.images_dir = Path(images_dir)
        self.skip_unreadable = bool(skip_unreadable)
        self._records: Records | None = None

    def _parse(self) -> Records:
        """List the images and parse their annotations (called once, by :meth:`load`)."""
        raise NotImplementedError

    def _list_images(
        self,
        issues: DatasetIssues,
        recursive: bool = False,
        used: set[str] | None = None,
        required: bool = True,
        stacklevel: int = 1,
    ) -> list[str]:
        """The image files (``IMAGE_EXTENSIONS``, any case) in ``images_dir``, relative posix paths, sorted.

        Other files, except hidden ones, obvious non-images (``.txt``, ``.json``, ``.yaml``, ``.csv``,
        ``.xml``, ``.cache``, ...) and those in ``used`` (annotated by name), are added to
        ``issues.not_images`` and counted in one warning naming a few: an image in a format that is
        not listed (``.tif``) is never left out silently. ``stacklevel`` is counted from the caller.

        Raises:
            AnnotationError: ``required`` and no image files (counting the other files).
        """
        paths = self.images_dir.rglob("*") if recursive else self.images_dir.iterdir()
        images: list[str] = []
        for path in paths:
            if not path.is_file():
                continue
            name = path.relative_to(self.images_dir).as_posix()
            suffix = path.suffix.lower()
            if suffix in IMAGE_EXTENSIONS:
                images.append(name)
            elif suffix not in _NOT_IMAGE_SUFFIXES and not any(part.startswith(".") for part in name.split("/")):
                if name not in (used or set()):
                    issues.not_images.append(name)
        issues.not_images.sort()
        if issues.not_images:
            warnings.warn(
                f"{len(issues.not_images)} files in {self.images_dir} skipped: their suffix is not an image "
                f"extension ({', '.join(IMAGE_EXTENSIONS)}) (e.g. {examples(issues.not_images)})",
                stacklevel=stacklevel + 1,
            )
        if required and not images:
            others = f" ({len(issues.not_images)} other files)" if issues.not_images else ""
            raise AnnotationError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {self.images_dir}{others}")
        return sorted(images)

    def _probe_size(self, name: str, issues: DatasetIssues) -> tuple[int, int] | None:
        """``(height, width)`` of ``images_dir / name`` from its header, for images whose annotation has no size.

        With ``skip_unreadable`` an image that cannot be read is added to ``issues.unreadable`` and
        ``None`` is returned (the caller leaves the image out); otherwise the error propagates.

        Raises:
            ImageReadError: The image cannot be read and ``skip_unreadable`` is off.
        """
        try:
            return image_size(self.images_dir / name)
        except ImageReadError:
            if not self.skip_unreadable:
                raise
            issues.unreadable.append(name)
            return None

    def _warn_unreadable(self, issues: DatasetIssues, stacklevel: int) -> None:
        """One warning counting the images :meth:`_probe_size` skipped, naming a few (none if none were).

        ``stacklevel`` is counted from the caller (usually :meth:`_parse`), as for ``warnings.warn``.
        """
        if issues.unreadable:
            warnings.warn(
                f"skipped {len(issues.unreadable)} unreadable images in {self.images_dir} "
                f"(e.g. {examples(issues.unreadable)})",
                stacklevel=stacklevel + 1,
            )

    def load(self) -> DetectionRecords:
        """Parse the annotations now (otherwise done on first use); returns ``self``.

        Raises:
            FileNotFoundError: A file or folder of the dataset is missing.
            AnnotationError: A malformed annotation, or no images at all (naming the files).
        """
        if self._records is None:
            records = self._parse()
            if not records.files:  # the formats say why where they know; this is the guarantee
                skipped = len(records.issues.unreadable)
                readable = f"readable images ({skipped} unreadable skipped)" if skipped else "images"
                raise AnnotationError(f"no {readable} in {self!r} (images folder {self.images_dir})")
            self._records = records
        return self

    @property
    def records(self) -> Records:
        """The parsed annotations."""
        return self.load()._records  # type: ignore[return-value]

    @property
    def files(self) -> list[str]:
        """Image paths relative to ``images_dir``, in item order."""
        return self.records.files

    @property
    def sizes(self) -> list[tuple[int, int] | None]:
        """``(height, width)`` of each image as annotated (``None`` if not annotated)."""
        return self.records.sizes

    @property
    def targets(self) -> Sequence[dict[str, np.ndarray]]:
        """Numpy per-box fields of each image."""
        return self.records.targets

    @property
    def image_ids(self) -> list[int]:
        """The ``image_id`` of each item (the format's id, else the index)."""
        ids = self.records.image_ids
        return list(ids) if ids is not None else list(range(len(self.records.files)))

    @property
    def class_names(self) -> list[str]:
        """Class names in label order."""
        return list(self.records.class_names)

    @property
    def category_ids(self) -> list[int] | None:
        """The format's id of each label, or ``None``."""
        ids = self.records.category_ids
        return list(ids) if ids is not None else None

    @property
    def issues(self) -> DatasetIssues:
        """What was repaired or skipped while loading (and, with ``skip_unreadable``, while reading)."""
        return self.records.issues

    def __len__(self) -> int:
        return len(self.records.files)

    def target(self, index: int) -> dict[str, Any]:
        """The target of item ``index`` without reading its image."""
        records = self.records
        target: dict[str, Any] = {k: v.copy() for k, v in records.targets[index].items()}
        target["image_id"] = records.image_ids[index] if records.image_ids is not None else index
        target["file_name"] = records.files[index]
        return target

    def load_image(self, index: int) -> np.ndarray:
        """Decode the image of item ``index`` (``uint8 [H, W, 3]`` RGB), checked against its annotated size.

        Raises:
            ImageReadError: The file is missing, unreadable, or not the annotated size.
        """
        path = self.images_dir / self.files[index]
        image = read_image(path)
        size = self.sizes[index]
        if size is not None and image.shape[:2] != size:
            raise ImageReadError(
                f"image {path} is {image.shape[1]}x{image.shape[0]} (w x h, after EXIF orientation) but its "
                f"annotation ({self.issues.source}) says {size[1]}x{size[0]}"
            )
        return image

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of {len(self)} images")
        index %= len(self)
        for attempt in range(len(self)):
            k = (index + attempt) % len(self)
            try:
                return self.load_image(k), self.target(k)
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
