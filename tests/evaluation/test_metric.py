"""Tests for detkit.evaluation.metric: CocoEvaluator, the torchmetrics Metric over the exact numpy COCOeval."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from detkit.evaluation import COCO_STAT_NAMES, CocoEvaluator, coco_json_to_tensors, evaluate_coco, load_ground_truth
from detkit.evaluation.cocojson import ground_truth_to_coco, load_results, results_to_coco


def _box(x1, y1, x2, y2):
    return torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)


def _feed(evaluator: CocoEvaluator, detections, targets, batch_size: int = 7) -> None:
    """Uneven batches, as a validation loop gives them."""
    for start in range(0, len(targets), batch_size):
        evaluator.update(detections[start : start + batch_size], targets[start : start + batch_size])


# ---- hand-known cases ----------------------------------------------------------------------


def test_perfect_and_wrong_detections():
    evaluator = CocoEvaluator()
    target = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([1])}
    evaluator.update([{"boxes": _box(10, 10, 50, 50), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], [target])
    assert evaluator.compute()["map"] == pytest.approx(1.0)
    evaluator.reset()
    evaluator.update([{"boxes": _box(60, 60, 90, 90), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], [target])
    assert evaluator.compute()["map"] == pytest.approx(0.0)


def test_crowd_ground_truth_is_ignored():
    evaluator = CocoEvaluator()
    target = {
        "boxes": torch.tensor([[10, 10, 50, 50], [100, 100, 200, 200]], dtype=torch.float32),
        "labels": torch.tensor([1, 1]),
        "iscrowd": torch.tensor([0, 1]),
    }
    # A detection on the crowd region is neither a false positive nor a missed crowd box.
    dets = {
        "boxes": torch.tensor([[10, 10, 50, 50], [100, 100, 200, 200]], dtype=torch.float32),
        "scores": torch.tensor([0.5, 0.9]),
        "labels": torch.tensor([1, 1]),
    }
    evaluator.update([dets], [target])
    assert evaluator.compute()["map"] == pytest.approx(1.0)


def test_area_ranges_use_the_annotation_area():
    # A 50x50 box (medium by its box area) whose annotation says 500 px: COCO puts it in "small".
    target = {"boxes": _box(0, 0, 50, 50), "labels": torch.tensor([0]), "area": torch.tensor([500.0])}
    found = {"boxes": _box(0, 0, 50, 50), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    evaluator = CocoEvaluator()
    evaluator.update([found], [target])
    stats = evaluator.compute()
    assert stats["map_small"] == pytest.approx(1.0) and stats["mar_small"] == pytest.approx(1.0)
    assert stats["map_medium"] == stats["map_large"] == stats["mar_medium"] == -1.0
    # Without "area" the box area decides: medium.
    evaluator.reset()
    evaluator.update([found], [{k: v for k, v in target.items() if k != "area"}])
    stats = evaluator.compute()
    assert stats["map_medium"] == pytest.approx(1.0) and stats["map_small"] == -1.0


def test_an_image_seen_twice_counts_once():
    target = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([1]), "image_id": 5}
    miss = {"boxes": _box(60, 60, 90, 90), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    other = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([1]), "image_id": 6}
    hit = {"boxes": _box(10, 10, 50, 50), "scores": torch.tensor([0.8]), "labels": torch.tensor([1])}
    once, twice = CocoEvaluator(), CocoEvaluator()
    once.update([miss, hit], [target, other])
    # The gather of DistributedSampler's padded repeat, as torchmetrics concatenates the processes' states.
    twice.update([miss, hit], [target, other])
    twice.update([miss], [target])
    assert twice.compute() == once.compute()
    assert once.compute()["mar_100"] == pytest.approx(0.5)
    assert once.compute()["num_images"] == 2.0


def test_the_first_copy_of_an_image_is_kept_and_images_without_id_always_count():
    target = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([0]), "image_id": torch.tensor(3)}
    hit = {"boxes": _box(10, 10, 50, 50), "scores": torch.tensor([0.8]), "labels": torch.tensor([0])}
    miss = {"boxes": _box(60, 60, 90, 90), "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}
    evaluator = CocoEvaluator()
    evaluator.update([hit, miss], [target, target])  # a second copy with other detections is dropped
    assert evaluator.compute()["map"] == pytest.approx(1.0)
    anonymous = {k: v for k, v in target.items() if k != "image_id"}
    evaluator.update([miss, miss], [anonymous, anonymous])  # no id: both count
    stats = evaluator.compute()
    assert stats["num_images"] == 3.0 and stats["mar_100"] == pytest.approx(1 / 3)
    gt, dt = evaluator.coco_inputs(["a"])
    assert gt.image_ids.tolist() == [3, 4, 5]  # images without id come after, with fresh ids
    assert len(dt.scores) == 3


def test_voc_ap50_option():
    evaluator = CocoEvaluator(voc_ap50=True)
    target = {"boxes": torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32), "labels": torch.tensor([2, 2])}
    dets = {"boxes": torch.tensor([[0, 0, 10, 10], [80, 80, 90, 90]], dtype=torch.float32), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([2, 2])}
    evaluator.update([dets], [{**target, "image_id": 1}])
    stats = evaluator.compute()
    assert list(stats) == [*COCO_STAT_NAMES, "voc_ap50", "num_images"]
    assert all(isinstance(v, float) for v in stats.values())
    assert stats["voc_ap50"] == pytest.approx(0.5)  # TP then FP: precision 1 up to recall 0.5


def test_empty_images_and_no_updates():
    evaluator = CocoEvaluator()
    with pytest.warns(UserWarning, match="before the ``update``"):
        stats = evaluator.compute()
    assert stats == {**{name: -1.0 for name in COCO_STAT_NAMES}, "num_images": 0.0}
    empty_target = {"boxes": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64), "image_id": 1}
    empty_dets = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    evaluator.update([empty_dets], [empty_target])
    assert evaluator.compute() == {**{name: -1.0 for name in COCO_STAT_NAMES}, "num_images": 1.0}


def test_bad_inputs_are_errors():
    evaluator = CocoEvaluator()
    target = {"boxes": _box(0, 0, 1, 1), "labels": torch.tensor([0])}
    dets = {"boxes": _box(0, 0, 1, 1), "scores": torch.tensor([0.5]), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match="1 detection entries but 2 targets"):
        evaluator.update([dets], [target, target])
    with pytest.raises(ValueError, match="1 boxes has 2 labels"):
        evaluator.update([dets], [{**target, "labels": torch.tensor([0, 1])}])
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        evaluator.update([dets], [{**target, "boxes": torch.zeros(1, 5)}])
    with pytest.raises(ValueError, match="1 detection boxes but 2 scores"):
        evaluator.update([{**dets, "scores": torch.tensor([0.5, 0.6])}], [target])
    with pytest.raises(ValueError, match="image_id must be >= 0"):
        evaluator.update([dets], [{**target, "image_id": -3}])
    evaluator.update([{**dets, "labels": torch.tensor([4])}], [target])
    with pytest.raises(ValueError, match="detection label 4 is not a class index below 2"):
        evaluator.coco_inputs(["a", "b"])
    with pytest.raises(ValueError, match="2 class names but 3 category ids"):
        evaluator.coco_inputs(["a", "b"], [1, 2, 3])


# ---- exactness: pycocotools, its published numbers, torchmetrics ------------------------------


def test_cocoapi100_matches_pycocotools_stats(cocoapi100):
    gt_file, dt_file, expected = cocoapi100
    detections, targets = coco_json_to_tensors(gt_file, dt_file)  # float32, as a model gives
    evaluator = CocoEvaluator()
    _feed(evaluator, detections, targets)
    stats = evaluator.compute()
    assert stats["num_images"] == 100.0
    for name, want in zip(COCO_STAT_NAMES, expected):
        assert stats[name] == pytest.approx(want, abs=1e-4), name
    # With the json's own float64 numbers, the numpy COCOeval of the json files themselves.
    detections, targets = coco_json_to_tensors(gt_file, dt_file, dtype=torch.float64)
    evaluator = CocoEvaluator()
    _feed(evaluator, detections, targets)
    gt = load_ground_truth(gt_file)
    reference = evaluate_coco(gt, load_results(dt_file, gt)).stats
    for name in COCO_STAT_NAMES:
        assert evaluator.compute()[name] == pytest.approx(reference[name], abs=1e-12), name


@pytest.mark.parametrize("seed", range(8))
def test_any_arrival_order_matches_pycocotools_exactly(seed, random_coco, pycocotools_eval):
    """Images arrive shuffled, in uneven batches, some twice; pycocotools' id order and tie-breaks hold."""
    gt_dict, dets = random_coco(seed)
    reference = pycocotools_eval(gt_dict, dets)
    detections, targets = coco_json_to_tensors(gt_dict, dets)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(targets)).tolist()
    order += rng.choice(order, 3).tolist()  # padded repeats
    evaluator = CocoEvaluator()
    _feed(evaluator, [detections[i] for i in order], [targets[i] for i in order], batch_size=int(rng.integers(1, 9)))
    stats = evaluator.compute()
    assert [stats[name] for name in COCO_STAT_NAMES] == reference.stats.tolist()
    assert stats["num_images"] == len(gt_dict["images"])
    gt = load_ground_truth(gt_dict)
    result = evaluate_coco(*evaluator.coco_inputs(gt.category_names, gt.category_ids))
    np.testing.assert_array_equal(result.precision, reference.eval["precision"])
    np.testing.assert_array_equal(result.recall, reference.eval["recall"])


def _torchmetrics_map(detections, targets) -> dict[str, float]:
    """torchmetrics' own MeanAveragePrecision, with pycocotools' float64 thresholds, crowds and areas."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(
        box_format="xyxy",
        iou_type="bbox",
        iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(),
        rec_thresholds=np.linspace(0.0, 1.0, 101).tolist(),
    )
    metric.update(
        [{k: d[k].float() for k in ("boxes", "scores")} | {"labels": d["labels"]} for d in detections],
        [{"boxes": t["boxes"].float(), "labels": t["labels"], "iscrowd": t["iscrowd"], "area": t["area"].float()} for t in targets],
    )
    out = metric.compute()
    return {name: float(out[name]) for name in COCO_STAT_NAMES}


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_torchmetrics_mean_average_precision(seed, random_coco):
    gt_dict, dets = random_coco(100 + seed)
    detections, targets = coco_json_to_tensors(gt_dict, dets)  # ascending id: torchmetrics keeps arrival order
    evaluator = CocoEvaluator()
    _feed(evaluator, detections, targets)
    stats = evaluator.compute()
    assert 0 < stats["map"] < 1  # not a degenerate case
    expected = _torchmetrics_map(detections, targets)  # float32 stats
    for name in COCO_STAT_NAMES:
        assert stats[name] == pytest.approx(expected[name], abs=1e-6), name


def test_cocoapi100_agrees_with_torchmetrics(cocoapi100):
    gt_file, dt_file, expected = cocoapi100
    detections, targets = coco_json_to_tensors(gt_file, dt_file)
    evaluator = CocoEvaluator()
    _feed(evaluator, detections, targets)
    stats = evaluator.compute()
    theirs = _torchmetrics_map(detections, targets)
    for name, want in zip(COCO_STAT_NAMES, expected):
        assert stats[name] == pytest.approx(theirs[name], abs=1e-6), name
        assert theirs[name] == pytest.approx(want, abs=1e-4), name


# ---- coco_inputs: category ids and json ------------------------------------------------------


def test_coco_inputs_map_labels_to_category_ids_and_round_trip_through_json():
    targets = [
        {"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 60, 60]], dtype=torch.float32), "labels": torch.tensor([0, 2]), "image_id": 9},
        {"boxes": torch.tensor([[5, 5, 50, 50]], dtype=torch.float32), "labels": torch.tensor([1]), "image_id": 4,
         "iscrowd": torch.tensor([1]), "area": torch.tensor([100.0])},
    ]  # fmt: skip
    detections = [
        {"boxes": torch.tensor([[0, 0, 10, 10], [20, 20, 50, 50]], dtype=torch.float32), "scores": torch.tensor([0.9, 0.7]), "labels": torch.tensor([0, 2])},
        {"boxes": torch.tensor([[6, 6, 40, 40]], dtype=torch.float32), "scores": torch.tensor([0.8]), "labels": torch.tensor([1])},
    ]  # fmt: skip
    evaluator = CocoEvaluator()
    evaluator.update(detections, targets)
    gt, dt = evaluator.coco_inputs(["cat", "dog", "eel"], category_ids=[30, 10, 20])
    assert gt.image_ids.tolist() == [4, 9]
    assert gt.category_ids.tolist() == [10, 20, 30] and gt.category_names == ["dog", "eel", "cat"]
    gt_json, dt_json = ground_truth_to_coco(gt), results_to_coco(dt, gt)
    assert [(a["image_id"], a["category_id"], a["iscrowd"], a["area"]) for a in gt_json["annotations"]] == [
        (9, 30, 0, 100.0), (9, 20, 0, 1600.0), (4, 10, 1, 100.0)
    ]  # fmt: skip
    assert gt_json["annotations"][1]["bbox"] == [20.0, 20.0, 40.0, 40.0]
    assert [(d["image_id"], d["category_id"], d["score"]) for d in dt_json] == [(9, 30, 0.8999999761581421), (9, 20, 0.699999988079071), (4, 10, 0.800000011920929)]
    again = load_ground_truth(json.loads(json.dumps(gt_json)))
    result = evaluate_coco(again, load_results(json.loads(json.dumps(dt_json)), again))
    assert result.stats == evaluate_coco(gt, dt).stats
    assert {k: result.stats[k] for k in COCO_STAT_NAMES} == {k: evaluator.compute()[k] for k in COCO_STAT_NAMES}
    # default ids: label + 1
    gt, _ = evaluator.coco_inputs(["cat", "dog", "eel"])
    assert gt.category_ids.tolist() == [1, 2, 3] and gt.category_names == ["cat", "dog", "eel"]


# ---- DDP: states gathered across processes, each image once ---------------------------------

_DDP_WORKER = """
import json, sys
import numpy as np, torch, torch.distributed as dist
from torch.utils.data import DistributedSampler
from detkit.evaluation import CocoEvaluator

rank, world, init = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
rng = np.random.default_rng(0)
images = []
for i in range(7):
    n = int(rng.integers(1, 4))
    xy = rng.uniform(0, 100, (n, 2)); boxes = np.concatenate([xy, xy + rng.uniform(10, 60, (n, 2))], 1)
    labels = rng.integers(0, 3, n)
    # image 0 gets many confident false positives, so counting it twice changes every stat
    extra = 8 if i == 0 else 1
    fxy = rng.uniform(200, 300, (extra, 2)); fps = np.concatenate([fxy, fxy + 20], 1)
    dboxes = np.concatenate([boxes + rng.normal(0, 3, boxes.shape), fps])
    det = {"boxes": torch.tensor(dboxes, dtype=torch.float32),
           "scores": torch.tensor(np.concatenate([rng.uniform(0.3, 0.9, n), np.full(extra, 0.95)]), dtype=torch.float32),
           "labels": torch.tensor(np.concatenate([labels, rng.integers(0, 3, extra)]))}
    target = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels), "image_id": 100 + i}
    images.append((det, target))

def evaluate(indices, with_ids=True):
    evaluator = CocoEvaluator(voc_ap50=True)
    for s in range(0, len(indices), 2):
        batch = [images[i] for i in indices[s : s + 2]]
        targets = [t if with_ids else {k: v for k, v in t.items() if k != "image_id"} for _, t in batch]
        evaluator.update([d for d, _ in batch], targets)
    stats = evaluator.compute()
    gt, dt = evaluator.coco_inputs(["a", "b", "c"])  # a collective too: every process calls it
    stats["coco_inputs"] = [gt.image_ids.tolist(), len(gt.boxes), len(dt.boxes)]
    stats["local_batches"] = len(evaluator.image_id)  # the local states are back after the gather
    return stats

indices = list(DistributedSampler(range(7), num_replicas=world, rank=rank, shuffle=False))
out = {"stats": evaluate(indices), "images": len(indices)}
if world == 1:  # the padded repeat counted twice, with nothing to recognise it by
    out["naive"] = evaluate(indices + [0], with_ids=False)
if rank == 0:
    print(json.dumps(out))
dist.barrier()
dist.destroy_process_group()  # a gloo group left to interpreter exit can abort ("terminate called ...")
"""


def _run_workers(tmp_path, world: int) -> dict:
    script = tmp_path / "worker.py"
    script.write_text(_DDP_WORKER)
    init = f"file://{tmp_path / f'init_{world}'}"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), str(world), init], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for r in range(world)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    return json.loads(outs[0][0].strip().splitlines()[-1])


def test_ddp_gathers_across_ranks_and_counts_each_image_once(tmp_path):
    single = _run_workers(tmp_path, 1)
    ddp = _run_workers(tmp_path, 2)
    assert ddp["images"] == 4 and single["images"] == 7  # each rank saw 4 images: 8 with one repeat
    assert ddp["stats"].pop("local_batches") == 2 and single["stats"].pop("local_batches") == 4
    assert ddp["stats"].pop("coco_inputs") == single["stats"].pop("coco_inputs") == [list(range(100, 107)), 18, 32]
    assert ddp["stats"] == pytest.approx(single["stats"], abs=1e-12)
    assert ddp["stats"]["num_images"] == 7
    # counting the repeat twice would change the stats: the test can fail
    assert single["naive"]["map"] != pytest.approx(single["stats"]["map"], abs=1e-3)
