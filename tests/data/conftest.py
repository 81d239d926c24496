"""Fixtures for the data tests: tiny COCO datasets written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

CocoFactory = Callable[..., tuple[Path, Path]]


@pytest.fixture
def make_coco(tmp_path: Path) -> CocoFactory:
    """Write images and a COCO json; returns ``(images_dir, ann_file)``.

    Images default to two solid-colour PNGs (``0001.png`` 64x48 w x h, id 1; ``0002.png`` 32x40, id 7)
    and categories to non-contiguous ids 3 "cat", 1 "ant", 10 "dog".
    """

    def factory(
        annotations: list[dict[str, Any]],
        images: list[dict[str, Any]] | None = None,
        categories: list[dict[str, Any]] | None = None,
        name: str = "ann.json",
        write_files: bool = True,
    ) -> tuple[Path, Path]:
        images_dir = tmp_path / "images"
        images_dir.mkdir(exist_ok=True)
        if images is None:
            images = [
                {"id": 1, "file_name": "0001.png", "width": 64, "height": 48},
                {"id": 7, "file_name": "0002.png", "width": 32, "height": 40},
            ]
        if categories is None:
            categories = [{"id": 3, "name": "cat"}, {"id": 1, "name": "ant"}, {"id": 10, "name": "dog"}]
        if write_files:
            for k, img in enumerate(images):
                array = np.full((img["height"], img["width"], 3), 40 * k + 20, dtype=np.uint8)
                Image.fromarray(array).save(images_dir / img["file_name"])
        ann_file = tmp_path / name
        ann_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
        return images_dir, ann_file

    return factory
