"""Tests for detkit.data.readers.coco.CocoReader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from detkit.data.readers.coco import CocoReader, read_coco_categories


def _ann(ann_id: int, image_id: int, category_id: int, bbox: list[float], **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, **extra}


def test_non_contiguous_ids_mapped_and_items_follow_contract(make_coco) -> None:
    images_dir, ann_file = make_coco(
        [
            _ann(1, 1, 10, [4, 6, 10, 20], area=150.0, iscrowd=1),
            _ann(2, 1, 1, [0, 0, 64, 48]),
            _ann(3, 7, 3, [2.5, 3.5, 4, 5]),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to clip or drop: no warning
        ds = CocoReader(images_dir, ann_file).load()
    assert ds.class_names == ["ant", "cat", "dog"]  # ids 1, 3, 10 ascending
    assert ds.category_ids == [1, 3, 10]
    assert ds.num_classes == 3
    assert len(ds) == 2 and ds.image_ids == [1, 7]

    image, target = ds[0]
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(target["boxes"], [[4, 6, 14, 26], [0, 0, 64, 48]])
    assert target["boxes"].dtype == np.float32
    np.testing.assert_array_equal(target["labels"], [2, 0])
    assert target["labels"].dtype == np.int64
    np.testing.assert_array_equal(target["iscrowd"], [1, 0])
    np.testing.assert_array_equal(target["area"], [150.0, 64 * 48])  # annotation area, else box area
    assert target["area"].dtype == np.float32
    assert target["image_id"] == 1 and target["file_name"] == "0001.png"

    image, target = ds[1]
    assert image.shape == (40, 32, 3)
    np.testing.assert_allclose(target["boxes"], [[2.5, 3.5, 6.5, 8.5]])
    np.testing.assert_array_equal(target["labels"], [1])
    assert target["image_id"] == 7


def test_background_images_are_kept(make_coco) -> None:
    ds = CocoReader(*make_coco([_ann(1, 1, 3, [1, 1, 5, 5])]))
    assert len(ds) == 2
    _, target = ds[1]
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == np.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == np.int64
    assert target["area"].shape == (0,) and target["iscrowd"].shape == (0,)


def test_missing_image_file_names_the_file_and_json(make_coco) -> None:
    images_dir, ann_file = make_coco([])
    (images_dir / "0002.png").unlink()
    ds = CocoReader(images_dir, ann_file)  # lazy: nothing is read yet
    with pytest.raises(FileNotFoundError, match=r"0002\.png.*ann\.json"):
        len(ds)


def test_unknown_category_id_names_annotation_image_and_category(make_coco) -> None:
    images_dir, ann_file = make_coco([_ann(1, 1, 3, [1, 1, 5, 5]), _ann(42, 7, 99, [1, 1, 5, 5])])
    with pytest.raises(ValueError, match=r"annotation 42.*0002\.png.*category id 99"):
        CocoReader(images_dir, ann_file).load()


def test_duplicate_image_ids_raise(make_coco) -> None:
    images = [
        {"id": 5, "file_name": "a.png", "width": 8, "height": 8},
        {"id": 5, "file_name": "b.png", "width": 8, "height": 8},
    ]
    with pytest.raises(ValueError, match=r"duplicate image ids \[5\]"):
        CocoReader(*make_coco([], images=images)).load()


def test_annotation_of_missing_image_id_raises(make_coco) -> None:
    with pytest.raises(ValueError, match=r"annotation 9 .*image id 123"):
        CocoReader(*make_coco([_ann(9, 123, 3, [1, 1, 5, 5])])).class_names


def test_boxes_outside_image_are_clipped_with_one_counting_warning(make_coco) -> None:
    images_dir, ann_file = make_coco(
        [
            _ann(11, 1, 3, [-4, 10, 20, 10]),  # left of the image
            _ann(12, 1, 3, [50, 40, 30, 30]),  # past right and bottom (64 x 48)
            _ann(13, 7, 1, [1, 1, 4, 4]),  # inside
            _ann(14, 7, 1, [20, -5, 20, 10]),  # past right and top (32 x 40)
        ]
    )
    ds = CocoReader(images_dir, ann_file)
    with pytest.warns(UserWarning, match=r"3 boxes extending outside their image clipped in .*ann\.json.*annotation 11 in 0001\.png") as record:
        ds.load()
    assert len([w for w in record if "clipped" in str(w.message)]) == 1
    _, target = ds[0]
    np.testing.assert_array_equal(target["boxes"], [[0, 10, 16, 20], [50, 40, 64, 48]])
    np.testing.assert_array_equal(target["area"], [16 * 10, 14 * 8])  # clipped box area (no 'area' field)
    _, target = ds[1]
    np.testing.assert_array_equal(target["boxes"], [[1, 1, 5, 5], [20, 0, 32, 5]])


def test_empty_boxes_are_dropped_with_one_counting_warning(make_coco) -> None:
    images_dir, ann_file = make_coco(
        [
            _ann(21, 1, 3, [5, 5, 0, 10]),  # zero width
            _ann(22, 1, 3, [5, 5, -3, 10]),  # negative width
            _ann(23, 1, 10, [70, 5, 10, 10]),  # entirely right of the 64-wide image: empty after clipping
            _ann(24, 1, 1, [1, 2, 3, 4]),  # valid
        ]
    )
    ds = CocoReader(images_dir, ann_file)
    with pytest.warns(UserWarning, match=r"3 boxes with zero or negative size .*dropped in .*ann\.json.*annotation 21 in 0001\.png") as record:
        ds.load()
    assert len([w for w in record if "dropped" in str(w.message)]) == 1
    _, target = ds[0]
    np.testing.assert_array_equal(target["boxes"], [[1, 2, 4, 6]])
    np.testing.assert_array_equal(target["labels"], [0])


def test_image_size_mismatch_raises_on_read(make_coco) -> None:
    images_dir, ann_file = make_coco([])
    images = [{"id": 1, "file_name": "0001.png", "width": 50, "height": 48}]
    _, ann_file = make_coco([], images=images, name="wrong.json", write_files=False)
    ds = CocoReader(images_dir, ann_file)
    with pytest.raises(ValueError, match=r"0001\.png"):
        ds[0]


def test_nothing_is_read_before_first_use(tmp_path) -> None:
    ds = CocoReader(tmp_path / "no_images", tmp_path / "no.json")
    assert repr(ds) == f"CocoReader(annotations='{tmp_path / 'no.json'}')"
    with pytest.raises(FileNotFoundError, match="no_images"):
        ds.class_names


def test_read_coco_categories_sorted_by_id(make_coco) -> None:
    _, ann_file = make_coco([])
    assert [c["name"] for c in read_coco_categories(ann_file)] == ["ant", "cat", "dog"]
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_coco_categories(ann_file.parent / "missing.json")
