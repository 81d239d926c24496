"""Tests for detkit.data.readers.voc.VocReader, split files, and VOC readers in a DetectionDataModule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detkit.data import DetectionDataModule, VocReader, read_split_file


def test_difficult_is_ignored_target_and_classes_discovered_sorted(tmp_path: Path, write_voc) -> None:
    images, anns = write_voc(
        tmp_path,
        {"a.jpg": (50, 80), "b.jpg": (30, 30)},
        {"a.jpg": [("zebra", 1, 2, 30, 40), ("ant", 5.5, 6, 20, 21, 1)], "b.jpg": [("ant", 0, 0, 10, 10)]},
    )
    ds = VocReader(images, anns)
    assert ds.class_names == ["ant", "zebra"] and len(ds) == 2
    image, target = ds[0]
    assert image.shape == (50, 80, 3)
    np.testing.assert_allclose(target["boxes"], [[1, 2, 30, 40], [5.5, 6, 20, 21]])
    assert target["labels"].tolist() == [1, 0] and target["iscrowd"].tolist() == [0, 1]
    assert ds.issues.ignored == ["a.xml object 2"]
    assert VocReader(images, anns, class_names=["zebra", "ant"]).target(0)["labels"].tolist() == [0, 1]


def test_split_files_txt_and_csv(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("a\nc.jpg\n\n")
    (tmp_path / "s.csv").write_text("filename,width\nb.jpg,1\na.jpg,1\nb.jpg,1\n")
    assert read_split_file(tmp_path / "s.txt") == ["a", "c"]
    assert read_split_file(tmp_path / "s.csv") == ["b", "a"]  # one row per box: repeats merged
    (tmp_path / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match=r"duplicate image ids .*dup\.txt"):
        read_split_file(tmp_path / "dup.txt")
    (tmp_path / "bad.csv").write_text("name\nx\n")
    with pytest.raises(ValueError, match="filename"):
        read_split_file(tmp_path / "bad.csv")


def test_devkit_layout(tmp_path: Path, write_image, voc_xml) -> None:
    root = tmp_path / "VOC2012"
    write_image(root / "JPEGImages" / "2008_1.jpg", 20, 30)
    write_image(root / "JPEGImages" / "2008_2.jpg", 20, 30)
    (root / "Annotations").mkdir(parents=True)
    for stem in ("2008_1", "2008_2"):
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", 20, 30, [("car", 1, 1, 9, 9)]))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_2\n")
    ds = VocReader(root, split="val")
    assert ds.files == ["2008_2.jpg"] and ds.class_names == ["car"]


def test_missing_split_entry_and_bad_xml_are_named(tmp_path: Path, write_voc) -> None:
    images, anns = write_voc(tmp_path, {"a.jpg": (10, 10)}, {"a.jpg": [("x", 1, 1, 5, 5)]})
    (tmp_path / "s.txt").write_text("a\nzz\n")
    with pytest.raises(FileNotFoundError, match=r"zz\.xml"):
        VocReader(images, anns, tmp_path / "s.txt").load()
    (anns / "a.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=r"a\.xml"):
        VocReader(images, anns).load()


def test_classes_discovered_from_the_whole_folder_agree_across_splits(tmp_path: Path, write_voc) -> None:
    images, anns = write_voc(tmp_path, {"a.jpg": (40, 40), "b.jpg": (40, 40)},
                             {"a.jpg": [("owl", 2, 2, 20, 20)], "b.jpg": [("bee", 5, 5, 30, 30)]})  # fmt: skip
    (tmp_path / "train.txt").write_text("a\n")
    (tmp_path / "val.txt").write_text("b\n")
    dm = DetectionDataModule(train=VocReader(str(images), str(anns), str(tmp_path / "train.txt")),
                             val=VocReader(str(images), str(anns), str(tmp_path / "val.txt")),
                             input_size=64, batch_size=1, num_workers=0)  # fmt: skip
    assert dm.class_names == ["bee", "owl"]
    dm.setup("fit")
    _, targets = next(iter(dm.val_dataloader()))
    assert targets[0]["labels"].tolist() == [0]
    assert dm.train_dataset.dataset.class_names == ["bee", "owl"]  # the train split alone has only "owl"
    assert dm.train_dataset.dataset.files == ["a.jpg"] and dm.val_dataset.dataset.files == ["b.jpg"]
