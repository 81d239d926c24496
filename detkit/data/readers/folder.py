"""A reader of a folder of unlabelled images, for prediction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detkit.data.readers.base import DatasetIssues
from detkit.data.readers.records import DetectionRecords, PackedTargets, Records, empty_target

__all__ = ["FolderReader"]


class FolderReader(DetectionRecords):
    """The image files directly inside a folder (jpg, jpeg, png, bmp, webp; sorted by name), without labels.

    Items follow the reader contract with no boxes: empty ``boxes`` float32 ``[0, 4]``, ``labels`` /
    ``iscrowd`` int64 ``[0]``, ``area`` float32 ``[0]``, ``image_id`` (the index) and ``file_name``
    (relative to the folder). ``class_names`` is empty: the classes come from the other splits' readers
    (or the checkpoint). See :class:`~detkit.data.readers.records.DetectionRecords` for ``skip_unreadable``.
    """

    def __init__(self, images: str | Path, skip_unreadable: bool = False) -> None:
        """Store the folder (it is listed on first use).

        Args:
            images: Folder holding the images (not searched recursively).
            skip_unreadable: Skip (count and warn about) unreadable images instead of raising.

        Loading raises:
            FileNotFoundError: ``images`` is not a folder.
            AnnotationError: ``images`` holds no image files.

        Loading warns (once, with a count) about files that are not images by their suffix (e.g. ``.tif``).
        """
        super().__init__(images, skip_unreadable)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(images='{self.images_dir}')"

    def _parse(self) -> Records:
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.images_dir}")
        issues = DatasetIssues(source=str(self.images_dir))
        files = self._list_images(issues, stacklevel=6)
        return Records(
            files=files,
            sizes=[None] * len(files),
            targets=PackedTargets(empty_target(), np.zeros(len(files) + 1, dtype=np.int64)),  # nothing per image
            class_names=[],
            issues=issues,
        )
