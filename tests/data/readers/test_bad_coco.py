"""Malformed COCO jsons: every bad entry is an AnnotationError naming the json, the entry's id and the field."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from detkit.data.readers import AnnotationError, CocoReader
from detkit.data.readers.coco import read_coco_categories

Patch = Callable[[dict[str, Any]], Any]
BAD_BOX = r"annotations whose 'bbox' is not 4 finite numbers \[x, y, width, height\]"


def _reader(make_coco, patch: Patch) -> CocoReader:
    """The default two-image dataset (ids 1, 7; categories 3 cat, 1 ant, 10 dog) with annotation 5, then ``patch``."""
    images_dir, ann_file = make_coco([{"id": 5, "image_id": 1, "category_id": 3, "bbox": [1, 2, 10, 8]}])
    data = json.loads(ann_file.read_text())
    patch(data)
    ann_file.write_text(json.dumps(data))
    return CocoReader(images_dir, ann_file)


def _ann(data: dict[str, Any]) -> dict[str, Any]:
    return data["annotations"][0]


def _add_ann(data: dict[str, Any], **fields: Any) -> None:
    data["annotations"].append({"id": 6, "image_id": 7, "category_id": 1, "bbox": [1, 1, 4, 4], **fields})


# (id, patch, problem, entry): the message is "1 <problem> in <json>: <entry>" (regexes)
BAD_ENTRIES: list[tuple[str, Patch, str, str]] = [
    ("bbox-missing", lambda d: _ann(d).pop("bbox"), "annotations without 'bbox'", "annotation 5"),
    ("bbox-null", lambda d: _ann(d).update(bbox=None), BAD_BOX, r"annotation 5 \(bbox: None\)"),
    ("bbox-3-values", lambda d: _ann(d).update(bbox=[1, 2, 3]), BAD_BOX, r"annotation 5 \(bbox: \[1, 2, 3\]\)"),
    ("bbox-string", lambda d: _ann(d).update(bbox="12x"), BAD_BOX, r"annotation 5 \(bbox: '12x'\)"),
    ("bbox-string-items", lambda d: _ann(d).update(bbox=["1", "2", "3", "4"]), BAD_BOX, r"annotation 5 \(bbox: \['1', .*\]\)"),
    ("bbox-nan", lambda d: _ann(d).update(bbox=[1, float("nan"), 3, 4]), BAD_BOX, r"annotation 5 \(bbox: \[1, nan, 3, 4\]\)"),
    ("image_id-missing", lambda d: _ann(d).pop("image_id"), "annotations without 'image_id'", "annotation 5"),
    ("category_id-missing", lambda d: _ann(d).pop("category_id"), "annotations without 'category_id'", "annotation 5"),
    ("category_id-string", lambda d: _ann(d).update(category_id="3"),
     "annotations whose 'category_id' is not an integer", r"annotation 5 \(category_id: '3'\)"),
    ("iscrowd-string", lambda d: _ann(d).update(iscrowd="yes"), "annotations whose 'iscrowd' is not 0 or 1", r"annotation 5 \(iscrowd: 'yes'\)"),
    ("area-string", lambda d: _ann(d).update(area="big"), "annotations whose 'area' is not a number >= 0", r"annotation 5 \(area: 'big'\)"),
    ("annotation-id-string", lambda d: _ann(d).update(id="a5"),
     "annotations whose 'id' is not an integer", r"annotations\[0\] \(id: 'a5'\)"),
    ("annotation-not-object", lambda d: d["annotations"].append([1, 2]),
     "annotations entries that are not objects", r"annotations\[1\] = \[1, 2\]"),
    ("category-name-missing", lambda d: d["categories"][0].pop("name"), "categories without 'name'", "category 3"),
    ("category-name-empty", lambda d: d["categories"][2].update(name=" "),
     "categories whose 'name' is not a non-empty string", r"category 10 \(name: ' '\)"),
    ("category-id-missing", lambda d: d["categories"][1].pop("id"), "categories without 'id'", r"categories\[1\]"),
    ("image-file_name-missing", lambda d: d["images"][1].pop("file_name"), "images without 'file_name'", "image 7"),
    ("image-id-missing", lambda d: d["images"][0].pop("id"), "images without 'id'", r"images\[0\]"),
    ("image-width-missing", lambda d: d["images"][0].pop("width"), "images without 'width'", "image 1"),
    ("image-height-zero", lambda d: d["images"][1].update(height=0),
     "images whose 'height' is not a positive number", r"image 7 \(height: 0\)"),
    ("image-id-string", lambda d: d["images"][1].update(id="7"), "images whose 'id' is not an integer", r"images\[1\] \(id: '7'\)"),
    ("unknown-image-id", lambda d: _add_ann(d, image_id=99),
     "annotations of an image id not in 'images'", r"annotation 6 \(image id 99\)"),
    ("unknown-category-id", lambda d: _add_ann(d, category_id=4),
     r"annotations of unknown category ids \(known: \[1, 3, 10\]\)", r"annotation 6 of 0002\.png \(category id 4\)"),
]


@pytest.mark.parametrize("patch, problem, entry", [p[1:] for p in BAD_ENTRIES], ids=[p[0] for p in BAD_ENTRIES])
def test_malformed_entry_names_json_entry_and_field(make_coco, patch: Patch, problem: str, entry: str) -> None:
    reader = _reader(make_coco, patch)
    with pytest.raises(AnnotationError, match=rf"^1 {problem} in .*ann\.json: {entry}$"):
        reader.load()


DUPLICATES: list[tuple[str, Patch, str]] = [
    ("images-not-list", lambda d: d.update(images={"id": 1}), r"ann\.json: 'images' must be a list, got dict"),
    ("annotation", lambda d: _add_ann(d, id=5), r"duplicate annotation ids \[5\] in .*ann\.json"),
    ("image", lambda d: d["images"][1].update(id=1), r"duplicate image ids \[1\] in .*ann\.json"),
    ("category", lambda d: d["categories"][2].update(id=3), r"duplicate category ids \[3\] in .*ann\.json"),
]


@pytest.mark.parametrize("patch, match", [p[1:] for p in DUPLICATES], ids=[p[0] for p in DUPLICATES])
def test_duplicate_ids_or_a_bad_list_raise_naming_json(make_coco, patch: Patch, match: str) -> None:
    with pytest.raises(AnnotationError, match=match):
        _reader(make_coco, patch).load()


@pytest.mark.parametrize("patch", [lambda d: d.update(images=[]), lambda d: d.pop("images")], ids=["empty", "missing"])
def test_json_without_images_is_an_error(make_coco, patch: Patch) -> None:
    with pytest.raises(AnnotationError, match=r"ann\.json: no images \('images' is missing or empty; 3 categories"):
        len(_reader(make_coco, patch))


def test_every_malformed_entry_is_counted_in_one_message(make_coco) -> None:
    def patch(data: dict[str, Any]) -> None:
        for k in range(4):
            _add_ann(data, id=10 + k, bbox=[1, 2])
        data["images"][0].pop("height")

    with pytest.raises(AnnotationError) as error:
        _reader(make_coco, patch).load()
    message = str(error.value)
    assert message.startswith("1 images without 'height' in ") and "ann.json: image 1; 4 annotations whose 'bbox'" in message
    assert "annotation 10 (bbox: [1, 2]), annotation 11 (bbox: [1, 2]), annotation 12 (bbox: [1, 2]) (and 1 more)" in message


def test_read_coco_categories_names_the_category_without_name(make_coco) -> None:
    _, ann_file = make_coco([], categories=[{"id": 1, "name": "ant"}, {"id": 2}])
    with pytest.raises(AnnotationError, match=r"^1 categories without 'name' in .*ann\.json: category 2$"):
        read_coco_categories(ann_file)


def test_annotations_without_id_are_accepted(make_coco) -> None:
    reader = _reader(make_coco, lambda d: _ann(d).pop("id"))  # optional in practice: named by position if malformed
    assert reader.target(0)["boxes"].tolist() == [[1, 2, 11, 10]]
