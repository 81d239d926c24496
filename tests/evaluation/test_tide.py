"""Tests for detkit.evaluation.tide: tidecv 1.0.1's numbers (stored), and hand-made cases per error type."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detkit.evaluation.cocojson import load_ground_truth, load_results
from detkit.evaluation.tide import ERROR_TYPES, SPECIAL_ERROR_TYPES, ErrorDecomposition, evaluate_tide

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = json.loads((DATA / "tide_reference.json").read_text())  # from data/make_tide_reference.py
ALL_ERRORS = ERROR_TYPES + SPECIAL_ERROR_TYPES
AP_HALF = 51 / 101 * 100  # tidecv's AP of one true positive out of two ground truths: 51 of 101 bars at 1


def assert_matches_tidecv(out: ErrorDecomposition, ref: dict) -> None:
    assert out.ap == pytest.approx(ref["ap"], abs=1e-4)
    for name in ALL_ERRORS:
        assert out.errors[name] == pytest.approx(ref["errors"][name], abs=1e-4), name
    assert out.counts == ref["counts"]
    ids = out.category_ids.tolist()
    for cid, per_class in ref["categories"].items():
        k = ids.index(int(cid))
        assert out.category_ap[k] == pytest.approx(per_class["ap"], abs=1e-4), cid
        for name in ALL_ERRORS:
            assert out.category_errors[name][k] == pytest.approx(per_class["errors"][name], abs=1e-4), (cid, name)
    absent = [k for k, cid in enumerate(ids) if str(cid) not in ref["categories"]]  # tidecv never saw them
    assert np.isnan(out.category_ap[absent]).all()


def test_fixture_matches_tidecv():
    ref = REFERENCE["fixture"]
    assert all(n > 0 for n in ref["counts"].values()), "the fixture must exercise every error type"
    out = evaluate_tide(DATA / "tide_fixture_gt.json", DATA / "tide_fixture_dt.json")
    assert_matches_tidecv(out, ref)


def test_fixture_needs_tidecvs_image_order_and_detection_cap():
    """The fixture's score ties across images (file order != id order) and its 110-detection image matter."""
    gt_dict = json.loads((DATA / "tide_fixture_gt.json").read_text())
    dets = json.loads((DATA / "tide_fixture_dt.json").read_text())
    by_id = load_ground_truth(gt_dict)  # a parsed GroundTruth is taken in id order
    in_id_order = evaluate_tide(by_id, load_results(dets, by_id))
    uncapped = evaluate_tide(gt_dict, dets, max_dets=1000)
    ref = REFERENCE["fixture"]
    assert max(abs(in_id_order.errors[n] - ref["errors"][n]) for n in ALL_ERRORS) > 1e-3
    assert max(abs(uncapped.errors[n] - ref["errors"][n]) for n in ALL_ERRORS) > 1e-3


def test_cocoapi100_matches_tidecv(cocoapi100):
    gt_file, dt_file, _ = cocoapi100
    if "cocoapi100" not in REFERENCE:
        pytest.skip("tide_reference.json was made without ../shared (no cocoapi100 numbers)")
    assert_matches_tidecv(evaluate_tide(gt_file, dt_file), REFERENCE["cocoapi100"])


def coco(annotations: list[tuple], detections: list[tuple], image_ids: tuple[int, ...] = (1,)) -> tuple[dict, list]:
    """``(image_id, category_id, [x, y, w, h])`` ground truths and ``(image_id, category_id, box, score)``
    detections over categories 1 ("a"), 2 ("b") and 3 ("c") -> COCO dicts."""
    gt = {
        "images": [{"id": i} for i in image_ids],
        "annotations": [
            {"id": n, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for n, (i, c, b) in enumerate(annotations, 1)
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}],
    }
    return gt, [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in detections]


G1, G2 = (1, 1, [0, 0, 10, 10]), (1, 1, [50, 50, 10, 10])  # two ground truths of class "a"
HIT = (1, 1, [0, 0, 10, 10], 0.9)  # a true positive on G1

# error type -> (ground truth, detections, expected dAP of that type alone)
CASES = {
    "classification": ([G1, G2], [HIT, (1, 2, [50, 50, 10, 10], 0.95)], 100 - AP_HALF / 2),  # "b" on G2
    "localization": ([G1, G2], [HIT, (1, 1, [55, 50, 10, 10], 0.95)], 100 - AP_HALF / 2),  # IoU 1/3 with G2
    "both": ([G1], [HIT, (1, 2, [5, 0, 10, 10], 0.95)], 50.0),  # "b", IoU 1/3 with G1
    "duplicate": ([G1, G2], [HIT, (1, 1, [1, 0, 10, 10], 0.8), (1, 1, [50, 50, 10, 10], 0.7)],
                  100 - (51 + 50 * 2 / 3) / 101 * 100),  # fmt: skip
    "background": ([G1], [HIT, (1, 1, [100, 100, 10, 10], 0.95)], 50.0),
    "missed": ([G1, G2], [HIT], 100 - AP_HALF),
}


@pytest.mark.parametrize("kind", ERROR_TYPES)
def test_one_error_of_each_type_costs_only_its_own_dap(kind):
    annotations, detections, expected = CASES[kind]
    out = evaluate_tide(*coco(annotations, detections))
    assert out.counts == {name: int(name == kind) for name in ERROR_TYPES}
    assert out.errors[kind] == pytest.approx(expected, abs=1e-9)
    assert all(out.errors[name] == 0.0 for name in ERROR_TYPES if name != kind)
    # per class "a": fixing "both" only empties class "b" (so it changes which classes the mean takes)
    assert (out.category_errors[kind][0] > 0) == (kind != "both")
    assert all(out.category_errors[name][0] == 0.0 for name in ERROR_TYPES if name != kind)
    assert np.isnan(out.category_ap[2])  # class "c": neither ground truth nor detections


def test_special_errors_on_hand_made_cases():
    background = evaluate_tide(*coco(*CASES["background"][:2]))
    assert background.ap == pytest.approx(50.0)  # [FP .95, TP .9]: precision 1/2 at every recall
    assert background.errors["false_positive"] == pytest.approx(50.0)  # every FP scored 0
    assert background.errors["false_negative"] == pytest.approx(0.0)  # nothing missed
    assert background.summary().splitlines()[2].startswith("| 50.00 | 0.00 | 0.00 | 0.00 | 0.00 | 50.00 | 0.00 | 50.00 | 0.00 |")
    missed = evaluate_tide(*coco(*CASES["missed"][:2]))
    assert missed.ap == pytest.approx(AP_HALF)
    assert missed.errors["false_positive"] == pytest.approx(0.0)
    assert missed.errors["false_negative"] == pytest.approx(100 - AP_HALF)


def test_a_wrong_class_on_a_taken_ground_truth_is_dropped_not_recovered():
    # "b" exactly on G1, which the "a" detection already took: fixing it removes it (class "b" empties).
    out = evaluate_tide(*coco([G1], [HIT, (1, 2, [0, 0, 10, 10], 0.95)]))
    assert out.counts["classification"] == 1 and out.counts["missed"] == 0
    assert out.ap == pytest.approx(50.0) and out.errors["classification"] == pytest.approx(50.0)
    np.testing.assert_allclose(out.category_ap, [100.0, 0.0, np.nan])


def test_crowd_region_hides_a_detection_of_its_class():
    gt, dets = coco([G1], [HIT, (1, 1, [60, 60, 5, 5], 0.95)])
    gt["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 1})
    out = evaluate_tide(gt, dets)
    assert out.ap == pytest.approx(100.0)  # the detection inside the crowd is not a false positive
    assert out.counts["background"] == 1  # but it is still counted as an error, as tidecv does
    assert out.errors["background"] == 0.0 and out.errors["false_positive"] == 0.0


def test_empty_detections():
    out = evaluate_tide(*coco([G1, G2, (1, 2, [20, 20, 5, 5])], []))
    assert out.ap == 0.0 and out.counts["missed"] == 3
    assert all(out.errors[name] == 0.0 for name in ALL_ERRORS)  # tidecv divides by zero here
    np.testing.assert_array_equal(out.category_ap, [0.0, 0.0, np.nan])


def test_empty_ground_truth_for_a_class_and_an_image():
    # class "b" has no ground truth; image 2 has none at all; class "c" has nothing.
    gt, dets = coco([G1], [HIT, (1, 2, [100, 100, 10, 10], 0.8), (2, 1, [0, 0, 10, 10], 0.5)], image_ids=(1, 2))
    out = evaluate_tide(gt, dets)
    assert out.counts["background"] == 2
    np.testing.assert_allclose(out.category_ap, [100.0, 0.0, np.nan])  # "a": its FP comes after full recall
    assert out.ap == pytest.approx(50.0)  # "b" counts, with AP 0
    assert out.errors["background"] == pytest.approx(50.0)  # fixed: "b" has neither, "a" stays at 100
    assert np.isnan(out.category_errors["background"][2])
    empty = evaluate_tide(*coco([], [(1, 2, [0, 0, 10, 10], 0.5)]))
    assert empty.ap == 0.0 and empty.counts["background"] == 1 and empty.errors["background"] == 0.0


def test_equal_ious_go_to_the_first_ground_truth_as_tidecv():
    # Two equal boxes of class "a": the hit takes the first (COCO would take the last); the
    # localization error then points at that taken one (first of equal IoUs), so the second is missed.
    twin = (1, 1, [0, 0, 10, 10])
    out = evaluate_tide(*coco([G1, twin], [HIT, (1, 1, [5, 0, 10, 10], 0.8)]))
    assert out.counts == {**dict.fromkeys(ERROR_TYPES, 0), "localization": 1, "missed": 1}
    assert out.errors["localization"] == 0.0  # fixing it only drops it, after the hit
    assert out.errors["missed"] == pytest.approx(100 - AP_HALF)
