"""Tests for detkit.data.readers.folder.FolderReader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detkit.data.readers import AnnotationError
from detkit.data.readers.folder import FolderReader


def test_lists_images_sorted_with_empty_targets(tmp_path: Path) -> None:
    for name, size in (("b.PNG", (10, 6)), ("a.jpg", (8, 4)), ("c.webp", (5, 5))):
        Image.new("RGB", size, (10, 20, 30)).save(tmp_path / name)
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()
    ds = FolderReader(tmp_path)
    assert ds.files == ["a.jpg", "b.PNG", "c.webp"] and ds.class_names == [] and ds.category_ids is None
    image, target = ds[1]
    assert image.shape == (6, 10, 3) and image.dtype == np.uint8
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == np.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == np.int64
    assert target["file_name"] == "b.PNG" and target["image_id"] == 1


def test_missing_or_empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        FolderReader(tmp_path / "nope").load()
    with pytest.raises(ValueError, match="no image files"):
        len(FolderReader(tmp_path))


def test_other_image_formats_are_counted_in_one_warning(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    for name in ("b.tif", "c.TIFF", "d.gif"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "labels.json").write_text("{}")
    reader = FolderReader(tmp_path)
    with pytest.warns(UserWarning, match=r"^3 files in .* skipped: their suffix is not an image extension .*\(e\.g\. b\.tif, c\.TIFF, d\.gif\)$"):
        assert reader.files == ["a.png"]


def test_folder_of_only_other_formats_counts_them_in_the_error(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "b.tif")
    with pytest.warns(UserWarning, match="1 files"), pytest.raises(AnnotationError, match=r"no image files .* \(1 other files\)"):
        FolderReader(tmp_path).load()
