"""Tests for detkit.evaluation.cocoeval: bit-exact agreement with pycocotools' COCOeval."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from detkit.evaluation import COCO_STAT_NAMES, coco_json_to_tensors
from detkit.evaluation.cocoeval import evaluate_coco
from detkit.evaluation.cocojson import detections_to_coco, load_ground_truth, load_results, targets_to_coco


def test_cocoapi100_reproduces_published_stats(cocoapi100):
    gt_file, dt_file, expected = cocoapi100
    gt = load_ground_truth(gt_file)
    stats = evaluate_coco(gt, load_results(dt_file, gt)).stats
    assert list(stats) == list(COCO_STAT_NAMES)
    for name, want in zip(COCO_STAT_NAMES, expected):
        assert stats[name] == pytest.approx(want, abs=1e-6), name


def test_cocoapi100_through_tensors_as_the_model_path_does(cocoapi100):
    gt_file, dt_file, expected = cocoapi100
    detections, targets = coco_json_to_tensors(gt_file, dt_file)  # float32 tensors, labels = class indices
    source = load_ground_truth(gt_file)
    names, category_ids = source.category_names, source.category_ids.tolist()
    gt = load_ground_truth(targets_to_coco(targets, names, category_ids))
    image_ids = [t["image_id"] for t in targets]
    stats = evaluate_coco(gt, load_results(detections_to_coco(detections, image_ids, category_ids), gt)).stats
    for name, want in zip(COCO_STAT_NAMES, expected):
        assert stats[name] == pytest.approx(want, abs=1e-4), name


@pytest.mark.parametrize("seed", range(25))
def test_random_edge_cases_match_pycocotools_exactly(seed, random_coco, pycocotools_eval):
    gt_dict, dets = random_coco(seed)
    reference = pycocotools_eval(gt_dict, dets)
    gt = load_ground_truth(gt_dict)
    result = evaluate_coco(gt, load_results(dets, gt))
    np.testing.assert_array_equal(result.precision, reference.eval["precision"])
    np.testing.assert_array_equal(result.recall, reference.eval["recall"])
    np.testing.assert_array_equal(list(result.stats.values()), reference.stats)


def test_edge_cases_are_present_in_the_random_data(random_coco):
    """The fuzz cases above really contain crowds, empty images, >100 detections and score ties."""
    gts, dets = zip(*(random_coco(seed) for seed in range(25)))
    anns = [a for gt in gts for a in gt["annotations"]]
    assert any(a["iscrowd"] for a in anns) and any(a["area"] == 32.0**2 for a in anns)
    assert any(len({a["image_id"] for a in gt["annotations"]}) < len(gt["images"]) for gt in gts)
    per_pair = [np.unique([(d["image_id"], d["category_id"]) for d in ds], axis=0, return_counts=True)[1].max() for ds in dets]
    assert max(per_pair) > 100
    assert any(len({d["score"] for d in ds}) < len(ds) for ds in dets)


def test_no_detections_gives_zero_ap_and_unknown_image_is_an_error(tmp_path):
    gt = load_ground_truth(
        {
            "images": [{"id": 1}, {"id": 2}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100}],
            "categories": [{"id": 3, "name": "a"}, {"id": 4, "name": "b"}],
        }
    )
    stats = evaluate_coco(gt, load_results([], gt)).stats
    assert stats["map"] == 0.0 and stats["mar_100"] == 0.0
    assert stats["map_medium"] == -1.0 and stats["map_large"] == -1.0  # no ground truth in those ranges
    bad = tmp_path / "dt.json"
    bad.write_text('[{"image_id": 9, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 0.5}]')
    with pytest.raises(ValueError, match="dt.json.*image_id 9"):
        load_results(bad, gt)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_ground_truth(tmp_path / "missing.json")


def test_json_path_imports_neither_torch_nor_lightning():
    code = (
        "import sys, detkit.evaluation, detkit.evaluation.cocojson, detkit.evaluation.report, detkit.evaluation.voc\n"
        "import detkit.commands, detkit.commands.evaluate\n"
        "heavy = [m for m in ('torch', 'torchmetrics', 'lightning', 'matplotlib') if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
