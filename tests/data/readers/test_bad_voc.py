"""Malformed VOC datasets: an AnnotationError naming the xml, the object and the tag, or one counting warning."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.data.readers import AnnotationError, VocReader


def _object(name: str | None = "x", **coords: str | None) -> str:
    """One ``<object>``; ``coords`` override ``xmin=1 ymin=1 xmax=5 ymax=5`` (``None`` leaves the tag out)."""
    values = {"xmin": "1", "ymin": "1", "xmax": "5", "ymax": "5", **coords}
    box = "".join(f"<{k}>{v}</{k}>" for k, v in values.items() if v is not None)
    tag = f"<name>{name}</name>" if name is not None else ""
    return f"<object>{tag}<bndbox>{box}</bndbox></object>"


def _write(root: Path, write_image, body: str, size: str = "<size><width>20</width><height>10</height></size>") -> tuple[Path, Path]:
    """``root/images/a.jpg`` (20 x 10) and ``root/annotations/a.xml`` holding ``body``."""
    write_image(root / "images" / "a.jpg", 10, 20)
    (root / "annotations").mkdir()
    (root / "annotations" / "a.xml").write_text(f"<annotation><filename>a.jpg</filename>{size}{body}</annotation>")
    return root / "images", root / "annotations"


NO_COORDS = "objects without <bndbox> coordinates"
BAD_COORDS = "objects with <bndbox> coordinates that are not finite numbers"


@pytest.mark.parametrize(
    "body, problem, entry",
    [
        (_object(name=None), "objects without <name>", "object 1"),
        (_object(name=" "), "objects without <name>", "object 1"),
        (_object(ymax=None), NO_COORDS, r"object 1 'x' \(<ymax>\)"),
        (_object(xmin=None, xmax=""), NO_COORDS, r"object 1 'x' \(<xmin> <xmax>\)"),
        ("<object><name>x</name></object>", NO_COORDS, r"object 1 'x' \(<xmin> <ymin> <xmax> <ymax>\)"),
        (_object() + _object(xmax="abc"), BAD_COORDS, r"object 2 'x' \(<xmax>abc</xmax>\)"),
        (_object(ymin="inf"), BAD_COORDS, r"object 1 'x' \(<ymin>inf</ymin>\)"),
        (_object(xmin="nan"), BAD_COORDS, r"object 1 'x' \(<xmin>nan</xmin>\)"),
        (_object(name=None, xmin="1,5"), "objects without <name>", rf"object 1; 1 {BAD_COORDS}: object 1 '' \(<xmin>1,5</xmin>\)"),
    ],
    ids=["no-name", "blank-name", "no-ymax", "no-xmin-empty-xmax", "no-bndbox", "text-xmax", "inf", "nan", "two-problems"],
)
def test_malformed_object_names_xml_object_and_tag(tmp_path: Path, write_image, body: str, problem: str, entry: str) -> None:
    images, anns = _write(tmp_path, write_image, body)
    with pytest.raises(AnnotationError, match=rf"^1 {problem} in .*annotations/a\.xml: {entry}$"):
        VocReader(images, anns).load()


@pytest.mark.parametrize("width, height", [("abc", "10"), ("20", "1e400")])
def test_size_that_is_not_numbers_names_xml_and_values(tmp_path: Path, write_image, width: str, height: str) -> None:
    size = f"<size><width>{width}</width><height>{height}</height></size>"
    images, anns = _write(tmp_path, write_image, _object(), size=size)
    with pytest.raises(AnnotationError, match=rf"^1 <size> values that are not finite numbers in .*a\.xml: <width>{width}</width> <height>{height}</height>$"):
        VocReader(images, anns).load()


def test_missing_size_is_measured_not_an_error(tmp_path: Path, write_image) -> None:
    images, anns = _write(tmp_path, write_image, _object(), size="")
    assert VocReader(images, anns).sizes == [(10, 20)]


def test_unknown_class_names_are_counted_naming_file_and_object(tmp_path: Path, write_voc) -> None:
    images, anns = write_voc(tmp_path, {"a.jpg": (20, 20), "b.jpg": (20, 20)},
                             {"a.jpg": [("ufo", 1, 1, 5, 5)], "b.jpg": [("cat", 1, 1, 5, 5), ("ghost", 2, 2, 6, 6)]})  # fmt: skip
    with pytest.raises(AnnotationError, match=r"^2 objects of unknown classes \(known: \['cat'\]\) in .*annotations: a\.xml object 1 'ufo', b\.xml object 2 'ghost'$"):
        VocReader(images, anns, class_names=["cat"]).load()


def test_boxes_outside_or_inverted_are_counted_warnings(tmp_path: Path, write_voc) -> None:
    images, anns = write_voc(tmp_path, {"a.jpg": (10, 20)},
                             {"a.jpg": [("x", -3, 1, 5, 5), ("x", 1, 1, 25, 12), ("x", 9, 1, 4, 5), ("x", 1, 1, 5, 5)]})  # fmt: skip
    reader = VocReader(images, anns)
    with pytest.warns(UserWarning, match=r"2 boxes extending outside their image clipped .*a\.xml object 1, a\.xml object 2"):
        with pytest.warns(UserWarning, match=r"1 boxes with zero or negative size \(after clipping\) dropped .*a\.xml object 3"):
            reader.load()
    assert reader.target(0)["boxes"].tolist() == [[0, 1, 5, 5], [1, 1, 20, 10], [1, 1, 5, 5]]


@pytest.mark.parametrize("name, text", [("s.txt", "\n\n"), ("s.csv", "filename,xmin\n")])
def test_split_file_listing_nothing_is_an_error_naming_it(tmp_path: Path, write_voc, name: str, text: str) -> None:
    images, anns = write_voc(tmp_path, {"a.jpg": (10, 10)}, {"a.jpg": [("x", 1, 1, 5, 5)]})
    (tmp_path / name).write_text(text)
    with pytest.raises(AnnotationError, match=rf"split file .*{name.replace('.', '[.]')} lists no images"):
        VocReader(images, anns, tmp_path / name).load()


def test_no_xml_matching_an_image_says_how_many_were_unmatched(tmp_path: Path, write_voc) -> None:
    images, anns = write_voc(tmp_path, {}, {"a.jpg": [("x", 1, 1, 5, 5)]})
    images.mkdir()
    with pytest.raises(AnnotationError, match=r"no images with annotations in .*annotations \(images: .*images; 1 xml files, 1 without their image"):
        VocReader(images, anns).load()


def test_other_formats_in_the_image_folder_are_counted_unless_an_xml_names_them(tmp_path: Path, write_voc, write_image, voc_xml) -> None:
    images, anns = write_voc(tmp_path, {"a.jpg": (10, 10)}, {"a.jpg": [("x", 1, 1, 5, 5)]})
    write_image(images / "b.tif", 10, 10)  # named by b.xml: used
    (anns / "b.xml").write_text(voc_xml("b.tif", 10, 10, [("x", 2, 2, 6, 6)]))
    write_image(images / "c.tif", 10, 10)  # named by nothing: not an image of this dataset, said so
    reader = VocReader(images, anns)
    with pytest.warns(UserWarning, match=r"^1 files in .*images skipped: their suffix is not an image extension .*\(e\.g\. c\.tif\)$"):
        reader.load()
    assert reader.files == ["a.jpg", "b.tif"] and reader.issues.not_images == ["c.tif"]
