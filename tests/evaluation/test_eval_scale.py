"""Evaluation at scale: results files read a block at a time, and matching in chunks on threads, give what one pass gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detkit.evaluation import json_stream
from detkit.evaluation.cocoeval import evaluate_coco
from detkit.evaluation.cocojson import load_ground_truth, load_results
from detkit.evaluation.json_stream import NotAnArray, iter_array


@pytest.mark.parametrize("seed", range(6))
def test_chunks_and_threads_change_nothing(seed, random_coco, pycocotools_eval):
    """Groups matched a few detections at a time on 2 threads: pycocotools' numbers, and the same matches."""
    gt_dict, dets = random_coco(seed)
    reference = pycocotools_eval(gt_dict, dets)
    gt = load_ground_truth(gt_dict)
    dt = load_results(dets, gt)
    whole = evaluate_coco(gt, dt, workers=1)
    chunked = evaluate_coco(gt, dt, chunk=5, workers=2)
    np.testing.assert_array_equal(chunked.precision, reference.eval["precision"])
    np.testing.assert_array_equal(chunked.recall, reference.eval["recall"])
    for name in ("index", "rank", "gt", "ignore"):
        np.testing.assert_array_equal(getattr(chunked.matches, name), getattr(whole.matches, name), err_msg=name)
    assert (whole.matches.gt >= 0).any() and whole.matches.ignore.any()  # the comparison is not vacuous
    lean = evaluate_coco(gt, dt, keep_matches=False, chunk=7)
    assert lean.matches is None and lean.stats == whole.stats
    np.testing.assert_array_equal(lean.num_dt, whole.num_dt)


def _awkward_results() -> list[dict]:
    """Detections whose text has '}' and ',' where no detection ends: nested objects, strings, unicode."""
    rows = []
    for k in range(40):
        row = {"image_id": 1 + k % 3, "category_id": 2 if k % 4 else 5, "bbox": [k, 2.5, 10, 20 + k], "score": 1 / (k + 2)}
        if k % 5 == 0:
            row["segmentation"] = {"counts": "}, {\"a\": [1}, ", "size": [4, 4]}  # a '},' inside a string and an object
        if k % 7 == 0:
            row["note"] = {"nested": {"deeper": [1, {"x": "é}"}]}}
        rows.append(row)
    return rows


GT = {
    "images": [{"id": 1}, {"id": 2}, {"id": 3}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 2.5, 10, 20], "area": 200}],
    "categories": [{"id": 2, "name": "a"}, {"id": 5, "name": "b"}],
}


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_a_results_file_read_in_blocks_equals_the_whole_list(tmp_path: Path, monkeypatch, indent, block) -> None:
    rows = _awkward_results()
    path = tmp_path / "dt.json"
    path.write_text("  \n" + json.dumps(rows, indent=indent, ensure_ascii=False) + "\n")
    monkeypatch.setattr(json_stream, "BLOCK_BYTES", block)
    assert [r for part in iter_array(path) for r in part] == rows
    if block == 7:
        assert len(list(iter_array(path))) > 1  # really in pieces
    gt = load_ground_truth(GT)
    streamed, whole = load_results(path, gt), load_results(rows, gt)
    for name in ("image", "category", "boxes", "scores"):
        np.testing.assert_array_equal(getattr(streamed, name), getattr(whole, name), err_msg=name)
    assert len(streamed.scores) == 40


def test_errors_name_the_file_whatever_block_they_are_in(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(json_stream, "BLOCK_BYTES", 16)
    gt = load_ground_truth(GT)
    rows = _awkward_results()
    rows[-3]["image_id"] = 99
    path = tmp_path / "late.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="late.json.*image_id 99"):
        load_results(path, gt)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(_awkward_results())[:-40])
    with pytest.raises(ValueError, match="broken.json is not valid json"):
        load_results(broken, gt)
    (tmp_path / "object.json").write_text('{"image_id": 1}')
    with pytest.raises(ValueError, match="object.json is not a COCO results json"):
        load_results(tmp_path / "object.json", gt)
    with pytest.raises(NotAnArray):
        list(iter_array(tmp_path / "object.json"))
    (tmp_path / "empty.json").write_text("[ ]")
    assert len(load_results(tmp_path / "empty.json", gt).scores) == 0
