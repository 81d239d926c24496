"""Tests for ``detkit evaluate``: a results json against ground truth, and a checkpoint on the test split."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch
import yaml

from detkit.commands import main as detkit_main
from detkit.commands.evaluate import main

STAT_NAMES = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
              "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]  # fmt: skip
COCOAPI100 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cocoeval" / "cocoapi100"


def _pycocotools(gt_file: Path, dt_file: Path) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
        evaluator = COCOeval(gt, gt.loadRes(str(dt_file)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats.tolist()


@pytest.mark.skipif(not COCOAPI100.exists(), reason="../shared/data/cocoeval/cocoapi100 not present")
def test_json_path_on_cocoapi100_prints_the_published_stats(capsys, tmp_path):
    source = next(COCOAPI100.glob("SOURCE_*")).read_text()
    block = source[source.index('"bbox": [') : source.index("]", source.index('"bbox": ['))]
    expected = [float(line.strip().rstrip(",")) for line in block.splitlines()[1:] if line.strip()]
    gt, dt = COCOAPI100 / "instances_val2014_100.json", COCOAPI100 / "instances_val2014_fakebbox100_results.json"
    assert detkit_main(["evaluate", "--gt", str(gt), "--dt", str(dt), "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    stats = json.loads(captured.out)
    assert list(stats) == STAT_NAMES
    assert [stats[k] for k in STAT_NAMES] == pytest.approx(expected, abs=1e-6)
    assert "person" in captured.err.splitlines()[1]  # the per-class table, on stderr
    assert json.loads((tmp_path / "metrics.json").read_text()) == stats
    for name in ("per_class.csv", "pr_curves.csv", "pr_overall.png", "pr_per_class.png", "confusion_matrix.csv", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_errors_name_the_file(capsys, tmp_path):
    assert main(["--gt", str(tmp_path / "nope.json"), "--dt", str(tmp_path / "dt.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
    (tmp_path / "gt.json").write_text('{"images": []}')
    (tmp_path / "dt.json").write_text("[]")
    assert main(["--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json")]) == 2
    assert "gt.json is not a COCO instances json" in capsys.readouterr().err


TINY_DETECTOR = {
    "class_path": "detkit.models.Detector",
    "init_args": {
        "backbone": {"class_path": "detkit.models.PlainConvBackbone", "init_args": {"widths": [8, 8, 16, 16, 16]}},
        "fpn_channels": 16,
        "fpn_extra_levels": 0,
        "head_convs": 1,
    },
}


def test_checkpoint_path_writes_results_pycocotools_reads(capsys, tmp_path):
    from detkit.module import DetectionModule

    torch.manual_seed(0)
    module = DetectionModule.from_config({"detector": TINY_DETECTOR, "num_classes": 3, "class_names": ["circle", "square", "triangle"]})
    with torch.no_grad():  # a head biased towards confident boxes, so an untrained model still detects
        for name, p in module.detector.named_parameters():
            if "cls" in name and name.endswith("bias"):
                p.fill_(2.0)
    checkpoint: dict = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    checkpoint["detkit"]["input_size"] = 64
    ckpt = tmp_path / "tiny.ckpt"
    torch.save(checkpoint, ckpt)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 1},  # ignored: only data: is read
        "model": {"detector": TINY_DETECTOR},
        "data": {"class_path": "detkit.data.ShapesDataModule",
                 "init_args": {"num_train": 1, "num_val": 1, "num_test": 8, "input_size": 64, "batch_size": 2, "num_workers": 0}},
    }))  # fmt: skip
    out = tmp_path / "report"
    argv = ["--ckpt_path", str(ckpt), "--config", str(config), "--data.init_args.num_test", "5", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    stats = json.loads(capsys.readouterr().out)
    assert list(stats) == STAT_NAMES
    ground_truth = json.loads((out / "ground_truth.json").read_text())
    detections = json.loads((out / "detections.json").read_text())
    assert len(ground_truth["images"]) == 5  # the override won over the config's 8
    assert [c["id"] for c in ground_truth["categories"]] == [1, 2, 3]  # label + 1
    assert detections and {d["category_id"] for d in detections} <= {1, 2, 3}
    assert [stats[k] for k in STAT_NAMES] == pytest.approx(_pycocotools(out / "ground_truth.json", out / "detections.json"), abs=1e-12)
