"""CocoReader's column-wise parse: the records of a json with every edge case, derived by hand, whichever way it is read.

The annotations list is read in chunks of ``coco_json._CHUNK_BYTES`` (patched down to 1 byte, so that
every possible cut is tried) unless something sends the reader to the whole-file parse; each test
says which path it takes and checks that it did.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detkit.data.readers import AnnotationError, CocoReader
from detkit.data.readers import coco_json
from detkit.data.readers.records import PackedTargets

CATEGORIES = [{"id": 5, "name": "b"}, {"id": 90, "name": "z"}, {"id": 2, "name": "a"}]  # labels: 2 -> 0, 5 -> 1, 90 -> 2
IMAGES = [  # json order = item order
    {"id": 30, "file_name": "a.png", "width": 20, "height": 10},
    {"id": 10, "file_name": "b.png", "width": 8, "height": 6},
    {"id": 20, "file_name": "c.png", "width": 5, "height": 5},  # no annotations
    {"id": 40, "file_name": "d.png", "width": 10.5, "height": 10},  # only a dropped box; size as a float
]
ANNOTATIONS = [  # interleaved across images, as in COCO
    {"id": 1, "image_id": 10, "category_id": 90, "bbox": [1, 1, 2, 2], "area": 3.5},
    {"id": 2, "image_id": 30, "category_id": 2, "bbox": [-2, 0, 6, 4], "iscrowd": 0},  # clipped left; no area
    {"id": 3, "image_id": 30, "category_id": 5, "bbox": [0, 0, 0, 3], "area": 9},  # zero width: dropped
    {"id": 4, "image_id": 10, "category_id": 5, "bbox": [6, 4, 5, 5], "iscrowd": 1, "area": 0},  # clipped; crowd
    {"id": 5, "image_id": 30, "category_id": 2, "bbox": [3.5, 2, 1, 1.25], "area": None},
    {"id": 6, "image_id": 40, "category_id": 2, "bbox": [12, 0, 3, 3], "iscrowd": 1},  # empty once clipped: dropped
    {"image_id": 30, "category_id": 90, "bbox": [1, 1, 1, 1], "iscrowd": 1.0},  # no id; crowd
]
# What the reader must give, worked out from the lists above
EXPECTED_BOXES = [
    [[0, 0, 4, 4], [3.5, 2, 4.5, 3.25], [1, 1, 2, 2]],  # a.png: annotations 2, 5, (no id); 3 dropped
    [[1, 1, 3, 3], [6, 4, 8, 6]],  # b.png: annotations 1, 4 (clipped to 8 x 6)
    [],
    [],
]
EXPECTED_LABELS = [[0, 0, 2], [2, 1], [], []]
EXPECTED_ISCROWD = [[0, 0, 1], [0, 1], [], []]
EXPECTED_AREA = [[16, 1.25, 1], [3.5, 4], [], []]  # the annotation's area; none, null or 0: the clipped box's


def _document(**changes: Any) -> dict[str, Any]:
    data = {"info": {"description": "edge cases"}, "images": IMAGES, "annotations": ANNOTATIONS, "categories": CATEGORIES}
    return {**data, **changes}


def _write(tmp_path: Path, data: dict[str, Any], indent: int | None = None) -> tuple[Path, Path]:
    images_dir = tmp_path / "images"
    images_dir.mkdir(exist_ok=True)
    for image in data["images"]:
        (images_dir / image["file_name"]).parent.mkdir(parents=True, exist_ok=True)
        (images_dir / image["file_name"]).touch()  # only listed, never decoded here
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(json.dumps(data, indent=indent))
    return images_dir, ann_file


def _check_edge_case_records(reader: CocoReader) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader.load()
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert messages[0].startswith("2 boxes extending outside their image clipped")
    assert messages[1].startswith("2 boxes with zero or negative size (after clipping) dropped")
    assert reader.class_names == ["a", "b", "z"] and reader.category_ids == [2, 5, 90]
    assert reader.image_ids == [30, 10, 20, 40]
    assert reader.files == ["a.png", "b.png", "c.png", "d.png"]
    assert reader.sizes == [(10, 20), (6, 8), (5, 5), (10, 10)]
    for k in range(4):
        target = reader.target(k)
        np.testing.assert_array_equal(target["boxes"], np.array(EXPECTED_BOXES[k], dtype=np.float32).reshape(-1, 4))
        np.testing.assert_array_equal(target["labels"], EXPECTED_LABELS[k])
        np.testing.assert_array_equal(target["iscrowd"], EXPECTED_ISCROWD[k])
        np.testing.assert_array_equal(target["area"], np.array(EXPECTED_AREA[k], dtype=np.float32))
        assert target["boxes"].dtype == np.float32 and target["area"].dtype == np.float32
        assert target["labels"].dtype == np.int64 and target["iscrowd"].dtype == np.int64
        assert target["image_id"] == reader.image_ids[k] and target["file_name"] == reader.files[k]
    issues = reader.issues
    assert issues.clipped == ["annotation 2 in a.png", "annotation 4 in b.png"]  # image by image
    assert issues.dropped == ["annotation 3 in a.png", "annotation 6 in d.png"]
    assert issues.ignored == ["annotation None in a.png", "annotation 4 in b.png"]
    assert issues.background_images == ["c.png", "d.png"]
    assert issues.non_contiguous_ids == [2, 5, 90]


@pytest.mark.parametrize("chunk_bytes", [1, 64, 2**20])
@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "indented"])
def test_edge_cases_read_in_chunks(tmp_path: Path, monkeypatch, chunk_bytes: int, indent: int | None) -> None:
    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", chunk_bytes)
    images_dir, ann_file = _write(tmp_path, _document(), indent)
    assert coco_json.read_coco_json(ann_file)[1] is not None  # the chunked path
    _check_edge_case_records(CocoReader(images_dir, ann_file))


@pytest.mark.parametrize(
    "changes",
    [
        {"info": {"annotations": [ANNOTATIONS[0]]}},  # a nested "annotations" key comes first
        {"annotations": [*ANNOTATIONS[:3], {**ANNOTATIONS[3], "attributes": [{"a": 1}, {"b": [2]}]}, *ANNOTATIONS[4:]]},
    ],
    ids=["nested-key-first", "nested-objects"],
)
def test_edge_cases_read_whole(tmp_path: Path, monkeypatch, changes: dict[str, Any]) -> None:
    monkeypatch.setattr(coco_json, "_RETRIES", 0)  # no second cut: a nested object sends the reader to the whole file
    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", 1)
    images_dir, ann_file = _write(tmp_path, _document(**changes))
    assert coco_json.read_coco_json(ann_file)[1] is None  # the whole-file path
    _check_edge_case_records(CocoReader(images_dir, ann_file))


def test_cuts_inside_strings_and_nested_objects_are_retried(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", 1)
    tricky = {"note": 'a "},{" and a }] in a string', "attributes": [{"a": 1}, {"b": {"c": [1]}}],
              "segmentation": {"counts": "ab[]\\}{", "size": [6, 8]}}  # fmt: skip
    data = _document(annotations=[{**a, **tricky} for a in ANNOTATIONS])
    images_dir, ann_file = _write(tmp_path, data)
    columns = coco_json.read_coco_json(ann_file)[1]
    assert columns is not None
    np.testing.assert_array_equal(columns["image_id"], [a["image_id"] for a in ANNOTATIONS])
    np.testing.assert_array_equal(columns["bbox"], [a["bbox"] for a in ANNOTATIONS])
    _check_edge_case_records(CocoReader(images_dir, ann_file))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"bbox": "1 2 3 4"}, r"1 annotations whose 'bbox' is not 4 finite numbers .*: annotation 207 \(bbox: '1 2 3 4'\)"),
        ({"bbox": [1, True, 3, 4]}, r"1 annotations whose 'bbox' is not 4 finite numbers .*: annotation 207"),
        ({"bbox": [1, float("nan"), 3, 4]}, r"1 annotations whose 'bbox' is not 4 finite numbers .*: annotation 207"),
        ({"image_id": True}, r"1 annotations whose 'image_id' is not an integer .*: annotation 207"),
        ({"image_id": 10.0}, r"1 annotations whose 'image_id' is not an integer .*: annotation 207"),
        ({"id": None}, r"1 annotations whose 'id' is not an integer .*: annotations\[206\] \(id: None\)"),
        ({"iscrowd": None}, r"1 annotations whose 'iscrowd' is not 0 or 1 .*: annotation 207"),
        ({"iscrowd": 2}, r"1 annotations whose 'iscrowd' is not 0 or 1 .*: annotation 207"),
        ({"area": -1}, r"1 annotations whose 'area' is not a number >= 0 .*: annotation 207"),
        ({"image_id": 2**63}, r"1 annotations whose 'image_id' does not fit in 64 bits .*: annotation 207"),
        ({"image_id": 99}, r"1 annotations of an image id not in 'images' .*: annotation 207 \(image id 99\)"),
        ({"category_id": 3}, r"1 annotations of unknown category ids \(known: \[2, 5, 90\]\) .*: annotation 207 of a\.png"),
    ],
)
def test_a_bad_annotation_deep_in_the_list_is_named(tmp_path: Path, monkeypatch, bad: dict[str, Any], message: str) -> None:
    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", 256)  # the bad one is in a later chunk
    good = [{"id": 1000 + k, "image_id": 30, "category_id": 2, "bbox": [1, 1, 2, 2]} for k in range(206)]
    images_dir, ann_file = _write(tmp_path, _document(annotations=[*good, {**good[0], "id": 207, **bad}]))
    with pytest.raises(AnnotationError, match=rf"^{message}"):
        CocoReader(images_dir, ann_file).load()


def test_duplicate_annotation_ids_across_chunks_raise(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", 64)
    annotations = [*ANNOTATIONS, {**ANNOTATIONS[0], "image_id": 40}, {**ANNOTATIONS[1], "id": 1}]
    images_dir, ann_file = _write(tmp_path, _document(annotations=annotations))
    assert coco_json.read_coco_json(ann_file)[1] is not None
    with pytest.raises(AnnotationError, match=r"duplicate annotation ids \[1\] in .*ann\.json"):
        CocoReader(images_dir, ann_file).load()


@pytest.mark.parametrize("annotations", ["[]", "[ \n ]", "null"], ids=["empty", "empty-spaced", "null"])
def test_no_annotations_gives_background_images(tmp_path: Path, annotations: str) -> None:
    images_dir, ann_file = _write(tmp_path, _document(annotations=[]))
    ann_file.write_text(ann_file.read_text().replace('"annotations": []', f'"annotations": {annotations}'))
    reader = CocoReader(images_dir, ann_file)
    assert len(reader) == 4 and reader.issues.background_images == ["a.png", "b.png", "c.png", "d.png"]
    assert all(len(t["boxes"]) == 0 and t["boxes"].shape == (0, 4) for t in reader.targets)


def test_image_files_are_found_in_subfolders_and_a_folder_is_not_a_file(tmp_path: Path) -> None:
    images = [{**IMAGES[0], "file_name": "sub/a.png"}, IMAGES[1]]
    images_dir, ann_file = _write(tmp_path, _document(images=images, annotations=ANNOTATIONS[:1]))
    assert CocoReader(images_dir, ann_file).files == ["sub/a.png", "b.png"]
    (images_dir / "b.png").unlink()
    (images_dir / "b.png").mkdir()
    with pytest.raises(FileNotFoundError, match=r"b\.png listed in .*ann\.json \(image id 10\) does not exist"):
        CocoReader(images_dir, ann_file).load()


def test_targets_are_packed_flat_and_survive_pickling(tmp_path: Path) -> None:
    reader = CocoReader(*_write(tmp_path, _document()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        targets = reader.targets
    assert isinstance(targets, PackedTargets) and len(targets) == 4
    assert targets.offsets.tolist() == [0, 3, 5, 5, 5]
    assert targets.fields["boxes"].shape == (5, 4)
    np.testing.assert_array_equal(targets[-3]["labels"], EXPECTED_LABELS[1])
    with pytest.raises(IndexError):
        targets[4]
    copy = pickle.loads(pickle.dumps(reader))  # as a DataLoader hands it to spawned workers
    np.testing.assert_array_equal(copy.target(0)["boxes"], EXPECTED_BOXES[0])
    reader.target(0)["boxes"][:] = -1  # an item is a copy: the packed arrays stay as parsed
    np.testing.assert_array_equal(reader.target(0)["boxes"], EXPECTED_BOXES[0])


def test_packed_targets_refuse_offsets_that_do_not_fit() -> None:
    fields = {"labels": np.arange(3)}
    with pytest.raises(ValueError, match="offsets"):
        PackedTargets(fields, np.array([1, 3]))
    with pytest.raises(ValueError, match="offsets"):
        PackedTargets(fields, np.array([0, 2, 1, 3]))
    with pytest.raises(ValueError, match="rows"):
        PackedTargets(fields, np.array([0, 2]))


def test_synthetic_train2017_like_json_agrees_with_pycocotools(tmp_path: Path, monkeypatch) -> None:
    """tools/bench_scale.py's generator, read by detkit and by pycocotools: the same boxes per image."""
    from pycocotools.coco import COCO

    from tools.scale_sets import COCO_CATEGORY_IDS, synthetic_coco

    monkeypatch.setattr(coco_json, "_CHUNK_BYTES", 4096)
    data = synthetic_coco(300, seed=1)
    assert len(data["images"]) == 300 and len(data["annotations"]) == round(300 * 860_001 / 118_287)
    images_dir, ann_file = _write(tmp_path, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = CocoReader(images_dir, ann_file).load()
        gt = COCO(str(ann_file))
    assert coco_json.read_coco_json(ann_file)[1] is not None
    label_of = {c: k for k, c in enumerate(COCO_CATEGORY_IDS)}
    for k, image_id in enumerate(reader.image_ids):
        image = gt.imgs[image_id]
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
        xyxy = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
        xyxy[:, 2:] += xyxy[:, :2]
        clipped = np.clip(xyxy, 0, [image["width"], image["height"]] * 2)
        kept = (xyxy[:, 2:] > xyxy[:, :2]).all(axis=1) & (clipped[:, 2:] > clipped[:, :2]).all(axis=1)
        target = reader.target(k)
        np.testing.assert_allclose(target["boxes"], clipped[kept], rtol=1e-6)
        np.testing.assert_allclose(target["area"], [a["area"] for a, keep in zip(anns, kept) if keep], rtol=1e-6)
        assert target["labels"].tolist() == [label_of[a["category_id"]] for a, keep in zip(anns, kept) if keep]
        assert target["iscrowd"].tolist() == [a["iscrowd"] for a, keep in zip(anns, kept) if keep]
