"""Malformed YOLO datasets: a clear error (naming yaml, label file and line) or one counting warning each."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from detkit.data.readers import AnnotationError, YoloReader, read_yolo_class_names

NAMES = ["cat", "dog"]
ABOVE_ONE = r"coordinates above 1 — absolute pixels\? YOLO labels are normalised to 0\.\.1"


@pytest.mark.parametrize(
    "text, match",
    [
        ("nc: 3\nnames: [cat, dog]\n", r"data\.yaml: 'nc: 3' disagrees with its 2 'names' cat, dog"),
        ("nc: 1\nnames:\n  0: cat\n  1: dog\n", r"data\.yaml: 'nc: 1' disagrees with its 2 'names' cat, dog"),
        ("nc: two\nnames: [cat, dog]\n", r"data\.yaml: 'nc: two' disagrees"),
        ("names:\n  '0': cat\n  '1': dog\n", r"'names' ids in .*data\.yaml must be integers, got \['0', '1'\]"),
    ],
    ids=["nc-list", "nc-mapping", "nc-not-a-number", "string-ids"],
)
def test_bad_data_yaml_names_the_yaml_and_values(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(AnnotationError, match=match):
        read_yolo_class_names(tmp_path / "data.yaml")


def test_nc_agreeing_with_names_is_fine(tmp_path: Path) -> None:
    (tmp_path / "data.yaml").write_text("nc: 2\nnames: [cat, dog]\n")
    assert read_yolo_class_names(tmp_path / "data.yaml") == NAMES


@pytest.mark.parametrize(
    "labels, match",
    [
        ({"a": "0 32 24 10 8\n"}, r"^1 label lines with " + ABOVE_ONE + r" in .*labels: a\.txt:1 \(max 32\)$"),
        ({"a": "0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.1 12\n"}, r"^1 label lines with " + ABOVE_ONE + r" in .*labels: a\.txt:2 \(max 12\)$"),
        ({"a": "0 3 4 30 4 30 20\n"}, r"^1 label lines with " + ABOVE_ONE + r" in .*labels: a\.txt:1 \(max 30\)$"),  # a segment
        ({"a": "0 32 24 10 8\n", "b": "1 5 5 2 2\n"}, r"^2 label lines with " + ABOVE_ONE + r" in .*labels: a\.txt:1 \(max 32\), b\.txt:1"),
    ],
    ids=["box", "second-line", "segment", "two-files"],
)
def test_absolute_pixel_labels_say_so_naming_file_and_line(tmp_path: Path, write_yolo, labels, match: str) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (48, 64), "b.png": (48, 64)}, labels)
    with pytest.raises(AnnotationError, match=match):
        YoloReader(images, class_names=NAMES).load()


def test_unknown_class_and_absolute_pixels_are_reported_together(tmp_path: Path, write_yolo) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (48, 64)}, {"a": "5 0.5 0.5 0.1 0.1\n0 30 20 4 4\n"})
    with pytest.raises(AnnotationError, match=r"^1 labels with unknown class ids \(known: 0\.\.1\) in .*labels: a\.txt:1 class 5; 1 label lines with " + ABOVE_ONE + r": a\.txt:2 \(max 30\)$"):
        YoloReader(images, class_names=NAMES).load()


def test_rounding_just_above_one_is_not_an_error(tmp_path: Path, write_yolo) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (10, 10)}, {"a": "0 0.5 0.5 1.008 0.2\n"})  # an exporter overshoot
    reader = YoloReader(images, class_names=NAMES)
    with pytest.warns(UserWarning, match=r"1 boxes extending outside their image clipped .*a\.txt:1"):
        assert reader.target(0)["boxes"].shape == (1, 4)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_values_name_file_and_line(tmp_path: Path, write_yolo, value: str) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (10, 10)}, {"a": f"0 0.5 0.5 0.1 0.1\n0 0.5 {value} 0.1 0.1\n"})
    with pytest.raises(AnnotationError, match=r"a\.txt line 2: not finite numbers"):
        YoloReader(images, class_names=NAMES).load()


def test_files_that_are_not_images_are_counted_in_one_warning(tmp_path: Path, write_yolo, write_image) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (10, 10)}, {"a": "0 0.5 0.5 0.1 0.1\n"})
    write_image(images / "b.tif", 10, 10)
    write_image(images / "sub" / "c.tiff", 10, 10)
    (images / "d.gif").write_bytes(b"GIF89a")
    for name in ("notes.txt", "data.yaml", "x.json", "y.csv", "z.xml", "labels.cache", ".DS_Store", "README"):
        (images / name).write_text("not an image")
    reader = YoloReader(images, class_names=NAMES)
    with pytest.warns(UserWarning, match=r"^3 files in .*images skipped: their suffix is not an image extension \(\.jpg.*\) \(e\.g\. b\.tif, d\.gif, sub/c\.tiff\)$"):
        reader.load()
    assert reader.files == ["a.png"] and reader.issues.not_images == ["b.tif", "d.gif", "sub/c.tiff"]


def test_obvious_non_images_next_to_images_are_not_warned_about(tmp_path: Path, write_yolo) -> None:
    images, _ = write_yolo(tmp_path, {"a.png": (10, 10)}, {"a": "0 0.5 0.5 0.1 0.1\n"})
    (images / "classes.txt").write_text("cat\n")
    (images / ".hidden.tif").write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(YoloReader(images, class_names=NAMES)) == 1


def test_folder_of_only_other_formats_is_an_error_counting_them(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "images" / "a.tif", 10, 10)
    with pytest.warns(UserWarning, match="1 files"), pytest.raises(AnnotationError, match=r"no image files .* in .*images \(1 other files\)"):
        YoloReader(tmp_path / "images", class_names=NAMES).load()


def test_all_images_unreadable_is_an_error_not_an_empty_dataset(tmp_path: Path, write_yolo) -> None:
    images, _ = write_yolo(tmp_path, {}, {"a": "0 0.5 0.5 0.1 0.1\n"})
    images.mkdir()
    (images / "a.png").write_bytes(b"not a png")
    reader = YoloReader(images, class_names=NAMES, skip_unreadable=True)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable images .*a\.png"), pytest.raises(
        AnnotationError, match=r"no readable images \(1 unreadable skipped\) in YoloReader\(labels='.*labels'\) \(images folder .*images\)"
    ):
        reader.load()


def test_missing_derived_labels_folder_warns_that_all_images_are_background(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "images" / "a.png", 10, 10)
    write_image(tmp_path / "images" / "b.png", 10, 10)
    reader = YoloReader(tmp_path / "images", class_names=NAMES)
    with pytest.warns(UserWarning, match=r"no labels folder .*labels .*: all 2 images are background images"):
        reader.load()
    assert reader.issues.background_images == ["a.png", "b.png"]
