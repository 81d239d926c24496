"""Bad inputs, each with its documented outcome, and the DataReport of detkit.data.check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detkit.data import CocoReader, ImageReadError, VocReader, YoloReader
from detkit.data.check import check_dataset, plot_reports
from detkit.data.images import TruncatedImageWarning
from detkit.data.readers import AnnotationError

NAMES = ["cat", "dog"]


def _yolo(write_yolo, tmp_path: Path, labels: dict[str, str], images: dict | None = None, **kwargs) -> YoloReader:
    """A loaded YoloReader (its warnings and errors happen here)."""
    images_dir, _ = write_yolo(tmp_path, images or {"a.png": (100, 200)}, labels)
    return YoloReader(images_dir, class_names=NAMES, **kwargs).load()


def _cut_jpeg(path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    Image.fromarray(array).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# ---- 1-2. corrupt file: error naming it, or skipped + counted + warned on request; truncated JPEG: recovered + warned
def test_corrupt_and_truncated_images_raise_or_are_skipped_with_count(tmp_path: Path, write_yolo) -> None:
    images_dir, _ = write_yolo(tmp_path, {"a.png": (10, 10), "c.png": (10, 10)}, {"a": "0 .5 .5 .2 .2\n"})
    _cut_jpeg(images_dir / "b.jpg")  # header fine, pixel data cut
    (images_dir / "d.png").write_text("not an image")  # header unreadable
    with pytest.raises(ImageReadError, match=r"d\.png"):
        YoloReader(images_dir, class_names=NAMES).load()
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable images .*d\.png"):
        ds = YoloReader(images_dir, class_names=NAMES, skip_unreadable=True).load()
    assert ds.files == ["a.png", "b.jpg", "c.png"] and ds.issues.unreadable == ["d.png"]
    with pytest.warns(TruncatedImageWarning, match=r"recovered truncated image .*b\.jpg"):
        image, target = ds[1]  # pixel data cut: decoded as far as it goes, as image viewers show it
    assert target["file_name"] == "b.jpg" and image.shape == (64, 64, 3)
    with pytest.warns(TruncatedImageWarning):
        report = check_dataset(ds)
    assert report.unreadable == ["d.png (skipped by the reader)"] and "1 unreadable images: d.png" in report.errors[0]


# ---- 3-7. EXIF rotation, CMYK, RGBA, 16-bit, grayscale: loaded as RGB with the right size and boxes
def test_unusual_image_modes_load_as_rgb_through_a_reader(tmp_path: Path) -> None:
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40 x 20 (w x h), displayed 20 x 40
    Image.new("RGB", (40, 20), (200, 0, 0)).save(images_dir / "exif.jpg", exif=exif.tobytes())
    Image.new("CMYK", (20, 40), (0, 255, 255, 0)).save(images_dir / "cmyk.jpg")
    Image.new("RGBA", (20, 40), (0, 0, 255, 0)).save(images_dir / "rgba.png")
    Image.fromarray(np.full((40, 20), 65535, dtype=np.uint16)).save(images_dir / "deep.png")
    Image.new("L", (20, 40), 77).save(images_dir / "gray.png")
    (tmp_path / "labels").mkdir()
    for stem in ("exif", "cmyk", "rgba", "deep", "gray"):
        (tmp_path / "labels" / f"{stem}.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    ds = YoloReader(images_dir, class_names=NAMES)
    for k in range(len(ds)):
        image, target = ds[k]
        assert image.shape == (40, 20, 3) and image.dtype == np.uint8, ds.files[k]
        np.testing.assert_allclose(target["boxes"], [[5, 10, 15, 30]], atol=1e-4)  # relative to the displayed image
    pixels = {ds.files[k]: ds[k][0][20, 10].tolist() for k in range(len(ds))}
    assert pixels["rgba.png"] == [0, 0, 0] and pixels["deep.png"] == [255, 255, 255] and pixels["gray.png"] == [77] * 3
    assert pixels["cmyk.jpg"][0] > 200 and pixels["exif.jpg"][0] > 180


# ---- 8-10. box outside image (clipped), zero-area and negative-size boxes (dropped): counted, one warning each
def test_out_of_bounds_clipped_degenerate_dropped(tmp_path: Path, write_yolo) -> None:
    labels = {"a": "0 0.95 0.5 0.2 0.2\n1 0.5 0.5 0.0 0.1\n1 0.5 0.5 -0.1 0.1\n0 0.25 0.25 0.1 0.1\n"}
    with pytest.warns(UserWarning) as record:
        ds = _yolo(write_yolo, tmp_path, labels)
    messages = [str(w.message) for w in record]
    assert any(m.startswith("1 boxes extending outside their image clipped") and "a.txt:1" in m for m in messages)
    assert any(m.startswith("2 boxes with zero or negative size") and "a.txt:2, a.txt:3" in m for m in messages)
    # a.png is 200 x 100: [170, 40, 210, 60] clipped to [170, 40, 200, 60]
    np.testing.assert_allclose(ds.target(0)["boxes"], [[170, 40, 200, 60], [40, 20, 60, 30]], atol=1e-4)
    assert ds.target(0)["labels"].tolist() == [0, 0]
    report = check_dataset(ds)
    assert not report.errors and len(report.issues.clipped) == 1 and len(report.issues.dropped) == 2
    assert re.search(r"out-of-bounds \(clipped\) +1  e\.g\. a\.txt:1\n", report.format())


# ---- 11. unknown class id: error listing every offending line
def test_unknown_class_ids_are_errors(tmp_path: Path, write_yolo) -> None:
    with pytest.raises(ValueError, match=r"2 labels with unknown class ids .*a\.txt:1 class 2, a\.txt:2 class 1\.5"):
        _yolo(write_yolo, tmp_path, {"a": "2 .5 .5 .1 .1\n1.5 .5 .5 .1 .1\n0 .5 .5 .1 .1\n"})


def test_unknown_voc_class_is_an_error_naming_the_xml(tmp_path: Path, write_voc) -> None:
    images, anns = write_voc(tmp_path, {"a.jpg": (10, 10)}, {"a.jpg": [("ufo", 1, 1, 5, 5)]})
    with pytest.raises(ValueError, match=r"a\.xml object 1 'ufo'"):
        VocReader(images, anns, class_names=["cat"]).load()


# ---- 12. label file without image: reported and ignored (warning)
def test_label_file_without_image_is_reported(tmp_path: Path, write_voc, write_yolo) -> None:
    with pytest.warns(UserWarning, match=r"1 label files without an image ignored .*ghost\.txt"):
        ds = _yolo(write_yolo, tmp_path, {"a": "0 .5 .5 .1 .1\n", "ghost": "0 .5 .5 .1 .1\n"})
    assert len(ds) == 1 and ds.issues.labels_without_images == ["ghost.txt"]
    assert any("label files without an image" in w for w in check_dataset(ds).warnings)
    images, anns = write_voc(tmp_path / "voc", {"a.jpg": (10, 10)}, {"a.jpg": [], "b.jpg": [("x", 1, 1, 5, 5)]})
    with pytest.warns(UserWarning, match=r"b\.xml"):
        assert VocReader(images, anns).files == ["a.jpg"]


# ---- 13. image without labels: a background image, counted
def test_image_without_labels_is_background(tmp_path: Path, write_yolo) -> None:
    ds = _yolo(write_yolo, tmp_path, {"a": "0 .5 .5 .1 .1\n"}, images={"a.png": (10, 10), "b.png": (10, 10)})
    assert ds.target(1)["boxes"].shape == (0, 4)
    report = check_dataset(ds)
    assert report.background_images == 1 and report.images == 2 and report.boxes == 1 and not report.errors


# ---- 14. duplicate image ids: error naming them (COCO ids, two images for one YOLO label, two xml for one image)
def test_duplicate_image_ids_are_errors(tmp_path: Path, make_coco, write_voc, write_yolo) -> None:
    images = [{"id": 5, "file_name": "0001.png", "width": 8, "height": 8}, {"id": 5, "file_name": "0002.png", "width": 8, "height": 8}]
    with pytest.raises(ValueError, match=r"duplicate image ids \[5\]"):
        CocoReader(*make_coco([], images=images)).load()
    with pytest.raises(ValueError, match=r"a\.txt <- a\.jpg, a\.png"):
        _yolo(write_yolo, tmp_path / "y", {}, images={"a.png": (10, 10), "a.jpg": (10, 10)})
    images_dir, anns = write_voc(tmp_path / "v", {"a.jpg": (10, 10)}, {"a.jpg": [("x", 1, 1, 5, 5)]})
    (anns / "copy.xml").write_text((anns / "a.xml").read_text())
    with pytest.raises(ValueError, match=r"copy\.xml and a\.xml annotate the same image a\.jpg"):
        VocReader(images_dir, anns).load()


# ---- 15. empty dataset: error naming the folder / reported by the checker
def test_empty_dataset(tmp_path: Path, make_coco) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(ValueError, match=r"no image files .*images"):
        YoloReader(tmp_path / "images", class_names=NAMES).load()
    (tmp_path / "annotations").mkdir()
    with pytest.raises(ValueError, match=r"no images with annotations in .*annotations"):
        VocReader(tmp_path / "images", tmp_path / "annotations").load()
    with pytest.raises(AnnotationError, match=r"ann\.json: no images"):
        CocoReader(*make_coco([], images=[])).load()


def test_report_counts_crowd_classes_non_contiguous_ids_and_plot(tmp_path: Path, make_coco) -> None:
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 20]},
        {"id": 2, "image_id": 1, "category_id": 10, "bbox": [5, 5, 30, 10], "iscrowd": 1},
        {"id": 3, "image_id": 7, "category_id": 3, "bbox": [1, 1, 4, 6]},
    ]
    report = check_dataset(CocoReader(*make_coco(anns)), "val")  # loads the reader
    assert report.images == 2 and report.boxes == 2 and report.ignored == 1
    assert report.per_class == {"ant": 0, "cat": 2, "dog": 0}
    assert report.issues.non_contiguous_ids == [1, 3, 10] and "non-contiguous [1, 3, 10]" in report.format()
    np.testing.assert_allclose(report.box_sizes, [[10, 20], [4, 6]])
    assert report.warnings == ["classes without boxes: ant, dog"] and not report.errors
    out = plot_reports([report, report], tmp_path / "plots" / "data.png")
    assert Image.open(out).size[0] > 100
    json.dumps(report.per_class)  # plain data
