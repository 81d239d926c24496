"""A dataset over a folder of unlabelled images, for prediction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from detkit.data.images import IMAGE_EXTENSIONS, read_image

__all__ = ["ImageFolder"]


class ImageFolder(Dataset):
    """The image files directly inside a folder (jpg, jpeg, png, bmp, webp; sorted by name).

    Items follow the dataset contract with no boxes: ``(image uint8 [H, W, 3] RGB, target)`` with
    empty ``boxes`` float32 ``[0, 4]``, ``labels`` / ``iscrowd`` int64 ``[0]``, ``area`` float32 ``[0]``,
    ``image_id`` (the index) and ``file_name`` (relative to ``root``).
    """

    def __init__(self, root: str | Path) -> None:
        """List the images of ``root``.

        Args:
            root: Folder holding the images (not searched recursively).

        Raises:
            FileNotFoundError: ``root`` is not a folder.
            ValueError: ``root`` holds no image files.
        """
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.files = sorted(
            p.name for p in self.root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not self.files:
            raise ValueError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        image = read_image(self.root / self.files[index])
        target = {
            "boxes": np.zeros((0, 4), dtype=np.float32),
            "labels": np.zeros(0, dtype=np.int64),
            "iscrowd": np.zeros(0, dtype=np.int64),
            "area": np.zeros(0, dtype=np.float32),
            "image_id": index,
            "file_name": self.files[index],
        }
        return image, target
