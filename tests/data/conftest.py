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


def _write_image(path: Path, height: int, width: int, value: int = 120) -> None:
    """A solid-colour image file (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)


def _write_yolo(root: Path, images: dict[str, tuple[int, int]], labels: dict[str, str]) -> tuple[Path, Path]:
    """``root/images/<name>`` of ``(height, width)`` and ``root/labels/<stem>.txt`` with the given text."""
    for name, (h, w) in images.items():
        _write_image(root / "images" / name, h, w)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for stem, text in labels.items():
        (root / "labels" / f"{stem}.txt").write_text(text)
    return root / "images", root / "labels"


def _voc_xml(filename: str, height: int | None, width: int | None, objects: list[tuple]) -> str:
    """VOC xml text; ``objects`` are ``(name, x1, y1, x2, y2)`` or ``(name, x1, y1, x2, y2, difficult)``."""
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>" if height else ""
    parts = []
    for obj in objects:
        name, box, difficult = obj[0], obj[1:5], obj[5] if len(obj) > 5 else 0
        coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>")
    return f"<annotation><filename>{filename}</filename>{size}{''.join(parts)}</annotation>"


def _write_voc(root: Path, images: dict[str, tuple[int, int]], objects: dict[str, list[tuple]]) -> tuple[Path, Path]:
    """``root/images/<name>`` and ``root/annotations/<stem>.xml`` for each key of ``objects``."""
    for name, (h, w) in images.items():
        _write_image(root / "images" / name, h, w)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for name, objs in objects.items():
        h, w = images.get(name, (10, 10))
        (root / "annotations" / f"{Path(name).stem}.xml").write_text(_voc_xml(name, h, w, objs))
    return root / "images", root / "annotations"


# The file writers as fixtures (test modules cannot import conftest under every pytest invocation).
@pytest.fixture
def write_image() -> Callable[..., None]:
    """:func:`_write_image`."""
    return _write_image


@pytest.fixture
def write_yolo() -> Callable[..., tuple[Path, Path]]:
    """:func:`_write_yolo`."""
    return _write_yolo


@pytest.fixture
def voc_xml() -> Callable[..., str]:
    """:func:`_voc_xml`."""
    return _voc_xml


@pytest.fixture
def write_voc() -> Callable[..., tuple[Path, Path]]:
    """:func:`_write_voc`."""
    return _write_voc
