"""Tests for detkit.data.readers.yolo.YoloReader, and YOLO readers in a DetectionDataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detkit.data import DetectionDataModule, YoloReader, read_yolo_class_names

NAMES = ["cat", "dog"]


def test_boxes_denormalised_background_and_contract(tmp_path: Path, write_yolo) -> None:
    # a.png 100 wide x 50 high: cx 0.5 cy 0.5 w 0.2 h 0.4 -> [40, 15, 60, 35]
    images, labels = write_yolo(tmp_path, {"a.png": (50, 100), "b.png": (20, 20)}, {"a": "1 0.5 0.5 0.2 0.4\n\n"})
    ds = YoloReader(images, class_names=NAMES)
    assert ds.labels_dir == labels and len(ds) == 2 and ds.num_classes == 2
    image, target = ds[0]
    assert image.shape == (50, 100, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(target["boxes"], [[40, 15, 60, 35]], atol=1e-4)
    assert target["boxes"].dtype == np.float32 and target["labels"].dtype == np.int64
    assert target["labels"].tolist() == [1] and target["iscrowd"].tolist() == [0]
    assert target["area"].tolist() == pytest.approx([400.0])
    assert target["image_id"] == 0 and target["file_name"] == "a.png"
    _, target = ds[1]  # no label file: background image
    assert target["boxes"].shape == (0, 4) and ds.issues.background_images == ["b.png"]


def test_segment_line_becomes_its_extent(tmp_path: Path, write_yolo) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (10, 20)}, {"a": "0 0.1 0.2 0.5 0.9 0.3 0.4\n"})
    np.testing.assert_allclose(YoloReader(images, class_names=NAMES).target(0)["boxes"], [[2, 2, 10, 9]], atol=1e-4)


def test_class_names_from_data_yaml(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("names: [a, b]\n")
    (tmp_path / "map.yaml").write_text("path: x\nnames:\n  1: b\n  0: a\n")
    assert read_yolo_class_names(tmp_path / "list.yaml") == read_yolo_class_names(str(tmp_path / "map.yaml")) == ["a", "b"]
    (tmp_path / "bad.yaml").write_text("nc: 2\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        read_yolo_class_names(tmp_path / "bad.yaml")


def test_malformed_line_names_file_and_line(tmp_path: Path, write_yolo) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (10, 10)}, {"a": "0 0.5 0.5 0.1 0.1\n0 0.5 0.5\n"})
    with pytest.raises(ValueError, match=r"a\.txt line 2"):
        YoloReader(images, class_names=NAMES).load()


def test_labels_dir_must_be_derivable(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    with pytest.raises(ValueError, match="cannot derive the labels folder .*pics.*give labels"):
        YoloReader(tmp_path / "pics", class_names=NAMES)


def test_datamodule_batches(tmp_path: Path, write_yolo) -> None:
    write_yolo(tmp_path / "train", {"a.png": (40, 60), "b.png": (30, 30)}, {"a": "0 0.5 0.5 0.5 0.5\n"})
    write_yolo(tmp_path / "val", {"c.png": (40, 60)}, {"c": "1 0.5 0.5 0.5 0.5\n"})
    (tmp_path / "data.yaml").write_text("names: [cat, dog]\n")
    data_yaml = str(tmp_path / "data.yaml")
    dm = DetectionDataModule(train=YoloReader(str(tmp_path / "train/images"), data_yaml),
                             val=YoloReader(str(tmp_path / "val/images"), data_yaml),
                             input_size=64, batch_size=2, num_workers=0)  # fmt: skip
    assert dm.class_names == NAMES
    dm.setup(None)
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (2, 3, 64, 64) and len(targets) == 2
    _, targets = next(iter(dm.test_dataloader()))  # test defaults to val
    assert targets[0]["labels"].tolist() == [1] and targets[0]["file_name"] == "c.png"
