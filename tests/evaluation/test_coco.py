"""Tests for detkit.evaluation.coco: COCO stats against pycocotools' published numbers."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detkit.evaluation import COCO_STAT_NAMES, DetectionEvaluator, coco_json_to_tensors

COCOAPI100 = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cocoeval" / "cocoapi100"


def _expected_bbox_stats() -> list[float]:
    source = next(COCOAPI100.glob("SOURCE_*")).read_text()
    block = source[source.index('"bbox": [') : source.index("]", source.index('"bbox": ['))]
    return [float(x) for x in re.findall(r"\d+\.\d+", block)]


@pytest.mark.skipif(not COCOAPI100.exists(), reason="../shared/data/cocoeval/cocoapi100 not present")
def test_cocoapi100_matches_pycocotools_stats():
    detections, targets = coco_json_to_tensors(
        COCOAPI100 / "instances_val2014_100.json", COCOAPI100 / "instances_val2014_fakebbox100_results.json"
    )
    evaluator = DetectionEvaluator()
    # Feed in uneven batches, as a validation loop would.
    for start in range(0, len(targets), 7):
        evaluator.update(detections[start : start + 7], targets[start : start + 7])
    stats = evaluator.compute()
    expected = _expected_bbox_stats()
    assert len(expected) == 12
    for name, want in zip(COCO_STAT_NAMES, expected):
        assert stats[name] == pytest.approx(want, abs=1e-4), name


def _box(x1, y1, x2, y2):
    return torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)


def test_perfect_and_wrong_detections():
    evaluator = DetectionEvaluator()
    target = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([1])}
    evaluator.update([{"boxes": _box(10, 10, 50, 50), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], [target])
    assert evaluator.compute()["map"] == pytest.approx(1.0)
    evaluator.reset()
    evaluator.update([{"boxes": _box(60, 60, 90, 90), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}], [target])
    assert evaluator.compute()["map"] == pytest.approx(0.0)


def test_crowd_ground_truth_is_ignored():
    evaluator = DetectionEvaluator()
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


def test_an_image_seen_twice_counts_once():
    target = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([1]), "image_id": 5}
    miss = {"boxes": _box(60, 60, 90, 90), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    other = {"boxes": _box(10, 10, 50, 50), "labels": torch.tensor([1]), "image_id": 6}
    hit = {"boxes": _box(10, 10, 50, 50), "scores": torch.tensor([0.8]), "labels": torch.tensor([1])}
    once, twice = DetectionEvaluator(), DetectionEvaluator()
    once.update([miss, hit], [target, other])
    twice.update([miss, hit], [target, other])
    twice.update([miss], [target])  # a padded repeat, as DistributedSampler makes
    assert twice.compute() == once.compute()
    assert once.compute()["mar_100"] == pytest.approx(0.5)


def test_voc_ap50_option():
    evaluator = DetectionEvaluator(voc_ap50=True)
    target = {"boxes": torch.tensor([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=torch.float32), "labels": torch.tensor([2, 2])}
    dets = {"boxes": torch.tensor([[0, 0, 10, 10], [80, 80, 90, 90]], dtype=torch.float32), "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([2, 2])}
    evaluator.update([dets], [{**target, "image_id": 1}])
    stats = evaluator.compute()
    assert list(stats) == [*COCO_STAT_NAMES, "voc_ap50", "num_images"]
    assert stats["voc_ap50"] == pytest.approx(0.5)  # TP then FP: precision 1 up to recall 0.5


_DDP_WORKER = """
import json, sys
import numpy as np, torch, torch.distributed as dist
from torch.utils.data import DistributedSampler
from detkit.evaluation import DetectionEvaluator

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
    evaluator = DetectionEvaluator()
    for s in range(0, len(indices), 2):
        batch = [images[i] for i in indices[s : s + 2]]
        targets = [t if with_ids else {k: v for k, v in t.items() if k != "image_id"} for _, t in batch]
        evaluator.update([d for d, _ in batch], targets)
    return evaluator.compute()

indices = list(DistributedSampler(range(7), num_replicas=world, rank=rank, shuffle=False))
out = {"stats": evaluate(indices), "images": len(indices)}
if world == 1:  # the padded repeat counted twice, with nothing to recognise it by
    out["naive"] = evaluate(indices + [0], with_ids=False)
if rank == 0:
    print(json.dumps(out))
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
    assert ddp["stats"] == pytest.approx(single["stats"], abs=1e-12)
    assert ddp["stats"]["num_images"] == 7
    # counting the repeat twice would change the stats: the test can fail
    assert single["naive"]["map"] != pytest.approx(single["stats"]["map"], abs=1e-3)
