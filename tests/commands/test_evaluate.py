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
        "neck": {"class_path": "detkit.models.FPN", "init_args": {"out_channels": 16, "extra_levels": 0}},
        "head": {"class_path": "detkit.models.FCOSHead", "init_args": {"num_convs": 1}},
    },
}


def _shapes(num_images: int, seed: int) -> dict:
    return {"class_path": "detkit.data.ShapesReader", "init_args": {"num_images": num_images, "seed": seed}}


def _confident_checkpoint(path: Path, class_names: list[str], input_size: int) -> None:
    """A tiny untrained detector whose head is biased towards confident boxes, saved as a checkpoint
    that both ``detkit test`` (Lightning) and ``load_detector`` read."""
    import lightning

    from detkit.training.module import DetectionModule

    torch.manual_seed(0)
    module = DetectionModule.from_config(
        {"detector": TINY_DETECTOR, "num_classes": len(class_names), "class_names": class_names, "input_size": input_size}
    )
    with torch.no_grad():
        for name, p in module.detector.named_parameters():
            if "cls" in name and name.endswith("bias"):
                p.fill_(2.0)
    checkpoint: dict = {"state_dict": module.state_dict(), "pytorch-lightning_version": lightning.__version__}
    module.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)


def test_checkpoint_path_writes_results_pycocotools_reads(capsys, tmp_path):
    from detkit.training.module import DetectionModule

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.ckpt"
    _confident_checkpoint(ckpt, ["circle", "square", "triangle"], input_size=64)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "trainer": {"max_epochs": 1},  # ignored: only data: is read
        "model": {"detector": TINY_DETECTOR},
        "data": {"train": _shapes(1, 0), "val": _shapes(1, 1), "test": _shapes(8, 2),
                 "input_size": 64, "batch_size": 2, "num_workers": 0},
    }))  # fmt: skip
    out = tmp_path / "report"
    argv = ["--ckpt_path", str(ckpt), "--config", str(config), "--data.test.init_args.num_images", "5", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    stats = json.loads(capsys.readouterr().out)
    assert list(stats) == STAT_NAMES
    ground_truth = json.loads((out / "ground_truth.json").read_text())
    detections = json.loads((out / "detections.json").read_text())
    assert len(ground_truth["images"]) == 5  # the override won over the config's 8
    assert [c["id"] for c in ground_truth["categories"]] == [1, 2, 3]  # label + 1
    assert detections and {d["category_id"] for d in detections} <= {1, 2, 3}
    assert [stats[k] for k in STAT_NAMES] == pytest.approx(_pycocotools(out / "ground_truth.json", out / "detections.json"), abs=1e-12)


def _coco_crossing_border(root: Path) -> tuple[Path, Path]:
    """Six noisy images whose boxes reach past the image border (the reader clips them)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    images, annotations = [], []
    (root / "images").mkdir(parents=True)
    for i in range(6):
        w, h = (90, 60) if i % 2 else (50, 70)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": w, "height": h})
        for k, (x, y, bw, bh) in enumerate([(-8.0, 5.0, 40.0, 30.0), (w - 20.0, h - 25.0, 35.0, 40.0), (3.0, 2.0, w - 1.0, h + 9.0)]):
            annotations.append({"id": 100 * i + k, "image_id": 10 + i, "category_id": 7 if k % 2 else 3,
                                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})  # fmt: skip
    categories = [{"id": 3, "name": "thing"}, {"id": 7, "name": "stuff"}]
    ann = root / "instances.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return root / "images", ann


def test_detkit_test_and_evaluate_checkpoint_agree_on_boxes_crossing_the_border(capsys, tmp_path):
    """One checkpoint, one mAP: `detkit test` and `detkit evaluate --ckpt_path` score the same ground
    truth (the reader's clipped boxes) with the same evaluator, at the checkpoint's input size."""
    from detkit.training.cli import build_cli

    images, ann = _coco_crossing_border(tmp_path / "coco")
    reader = {"class_path": "detkit.data.CocoReader", "init_args": {"images": str(images), "annotations": str(ann)}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "seed_everything": 0,
        "trainer": {"logger": False, "enable_progress_bar": False, "enable_model_summary": False, "callbacks": []},
        "model": {"detector": TINY_DETECTOR, "warmup_steps": 0,
                  "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}}},
        # the config says 64; the checkpoint is trained at 96, which `detkit test` is told and evaluate reads
        "data": {"train": reader, "val": reader, "input_size": 64, "batch_size": 6, "num_workers": 0,
                 "augmentations": "light", "scale_range": [1.0, 1.0]},
    }))  # fmt: skip
    run = ["--config", str(config), "--data.input_size", "96", "--trainer.default_root_dir", str(tmp_path / "run")]
    with pytest.warns(UserWarning, match="clipped"):
        build_cli(["fit", *run, "--trainer.max_steps", "80", "--trainer.check_val_every_n_epoch", "100"])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    cli = build_cli(["test", *run, "--ckpt_path", str(ckpt)])
    logged = {k.removeprefix("test/"): float(v) for k, v in cli.trainer.logged_metrics.items() if k.startswith("test/")}
    assert logged["num_images"] == 6

    capsys.readouterr()
    assert main(["--ckpt_path", str(ckpt), "--config", str(config), "--out", str(tmp_path / "report")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["map"] > 0.01 and stats["map_50"] > 0.05, stats  # not a trivial 0 == 0
    print("detkit test:", {k: logged[k] for k in STAT_NAMES}, "\ndetkit evaluate:", {k: stats[k] for k in STAT_NAMES})
    for name in STAT_NAMES:
        assert stats[name] == pytest.approx(logged[name], abs=1e-6), name
    scored = json.loads((tmp_path / "report" / "ground_truth.json").read_text())
    boxes = [a["bbox"] for a in scored["annotations"]]
    assert len(boxes) == 18 and min(min(b[:2]) for b in boxes) >= 0  # clipped, none dropped
    assert {c["id"] for c in scored["categories"]} == {3, 7}  # the dataset's own category ids
