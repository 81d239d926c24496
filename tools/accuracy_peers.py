"""The peer rows of ``tools/accuracy.py``: torchvision FCOS through a plain loop, and Ultralytics YOLO11n trained by Ultralytics."""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from detkit.training.cli import build_data
from detkit.data import DetectionDataModule
from detkit.evaluation import CocoEvaluator
from detkit.evaluation.cocojson import results_to_coco, write_json
from detkit.ops.letterbox import to_original_pixels
from detkit.ops.xywh import xyxy_to_xywh
from tools.accuracy_measure import cpu_latency_ms, data_args, evaluate, gflops, run_logged
from tools.benchmark import torchvision_detector

YOLO = "yolo11n"


# ---- torchvision FCOS ----------------------------------------------------------------------------
def train_torchvision(
    name: str, seed: int, budget: float | None, args: argparse.Namespace, run_dir: Path, gt_path: Path
) -> dict[str, Any]:
    """torchvision's detector through a plain training loop on the harness's DetectionDataModule."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    data = build_data(data_args(args))
    data.setup("fit")
    data.setup("test")
    model = torchvision_detector(name, data.num_classes, args.size, from_scratch=True)
    model.score_thresh, model.nms_thresh, model.detections_per_img = 0.05, 0.6, 100
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.tv_lr, weight_decay=0.05)
    loop = SimpleNamespace(current_epoch=0, max_epochs=args.epochs or 10**6)  # read by the mosaic schedule
    data.trainer = loop
    loader = data.train_dataloader()
    steps = len(loader)
    plan = {"total": args.epochs * steps if args.epochs else None}

    def factor(step: int) -> float:
        total = plan["total"] or 10**9  # before the budget fixes the epochs: warming up
        warmup = max(1, min(100, total // 5))
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    start = time.perf_counter()
    step, epoch = 0, 0
    model.train()
    while epoch < loop.max_epochs:
        loop.current_epoch = epoch
        for images, targets in loader:
            loss = sum(model(list(images), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
            step += 1
            elapsed = time.perf_counter() - start
            if budget is not None and not args.epochs and step in (3, steps):  # fix the epochs from the pace
                pace = elapsed / step if step == steps else (elapsed / step) * 1.1  # first steps: rough
                loop.max_epochs = max(1, math.floor(budget / (pace * steps)))
                plan["total"] = loop.max_epochs * steps
            if budget is not None and not args.epochs and elapsed > budget:
                loop.max_epochs = epoch + 1  # budget spent: stop here
                break
        epoch += 1
    wall = time.perf_counter() - start

    model.eval()
    evaluator = CocoEvaluator()
    with torch.inference_mode():
        for images, targets in data.test_dataloader():
            evaluator.update(*to_original_pixels(model(list(images)), targets))
    gt, dt = evaluator.coco_inputs(data.class_names, data.category_ids)
    write_json(run_dir / "detections.json", results_to_coco(dt, gt))
    stats = evaluate(gt_path, run_dir / "detections.json", run_dir / "evaluate.log")

    x = data.test_dataset[0][0]  # the first test image as evaluated: letterboxed (3, S, S) in [0, 1]
    run = lambda: model([x])  # noqa: E731
    with torch.inference_mode():
        latency = cpu_latency_ms(run, args.latency_threads)
    return {
        "map": stats["map"], "map_50": stats["map_50"], "wall_s": wall, "epochs": round(step / steps, 1),
        "latency_ms": latency, "gflops": gflops(run), "input": f"{args.size}x{args.size}",
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }  # fmt: skip


# ---- Ultralytics YOLO11n -------------------------------------------------------------------------
def write_yolo_dataset(datamodule: DetectionDataModule, root: Path) -> tuple[Path, dict[str, int]]:
    """The train and test splits in YOLO format under ``root`` (images copied, not linked: Ultralytics
    rewrites JPEGs it finds corrupt); returns the data yaml and the test image id of each file stem.

    Images are renamed ``<split>_<index>``; crowd / difficult boxes (detkit ignores them) are left out.
    """
    stem_to_id: dict[str, int] = {}
    for split in ("train", "test"):
        reader = datamodule.reader(split)
        if not hasattr(reader, "images_dir") or not hasattr(reader, "sizes"):
            raise ValueError(f"the {split} reader {reader!r} has no image files to copy for Ultralytics")
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for index in range(len(reader)):
            target = reader.target(index)
            source = Path(reader.images_dir) / target["file_name"]
            stem = f"{split}_{index:06d}"
            shutil.copyfile(source, root / "images" / split / f"{stem}{source.suffix.lower()}")
            height, width = reader.sizes[index] or reader.load_image(index).shape[:2]
            lines = []
            for (x1, y1, x2, y2), label, crowd in zip(target["boxes"], target["labels"], target["iscrowd"]):
                if not crowd:
                    cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
                    lines.append(f"{int(label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            (root / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
            if split == "test":
                stem_to_id[stem] = int(target["image_id"])
    names = "".join(f"  {k}: {json.dumps(name)}\n" for k, name in enumerate(datamodule.class_names))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root.resolve()}\ntrain: images/train\nval: images/test\nnames:\n{names}")
    return yaml, stem_to_id


def train_yolo(seed: int, args: argparse.Namespace, run_dir: Path, gt_path: Path,
               datamodule: DetectionDataModule) -> dict[str, Any]:  # fmt: skip
    """Ultralytics trains YOLO11n on a YOLO-format copy of the split; detkit scores its predictions."""
    with tempfile.TemporaryDirectory(prefix="detkit_yolo_") as tmp:
        yaml, stem_to_id = write_yolo_dataset(datamodule, Path(tmp))
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(run_dir / "ultralytics_settings")}
        run_logged([args.yolo_python, "-m", "tools.yolo_peer", "--data", str(yaml), "--images", str(Path(tmp) / "images" / "test"),
              "--out", str(run_dir), "--epochs", str(args.yolo_epochs), "--imgsz", str(args.size),
              "--batch", str(args.batch), "--seed", str(seed), "--threads", str(args.latency_threads)],
             run_dir / "yolo.log", env=env)  # fmt: skip
    peer = json.loads((run_dir / "peer.json").read_text())
    category_ids = datamodule.category_ids or list(range(1, datamodule.num_classes + 1))
    results = [
        {"image_id": stem_to_id[p["stem"]], "category_id": int(category_ids[c]), "bbox": box, "score": s}
        for p in peer["predictions"]
        for box, s, c in zip(xyxy_to_xywh(np.asarray(p["boxes"], np.float64).reshape(-1, 4)).tolist(), p["scores"], p["classes"])
    ]  # fmt: skip
    if len({p["stem"] for p in peer["predictions"]}) != len(stem_to_id):
        raise RuntimeError(f"YOLO predicted {len(peer['predictions'])} of {len(stem_to_id)} test images")
    unreadable = peer.get("unreadable", [])
    if unreadable:
        print(f"   note: Ultralytics could not read {len(unreadable)} test image(s) (scored as no detections): "
              f"{', '.join(unreadable)}", flush=True)  # fmt: skip
    write_json(run_dir / "detections.json", results)
    stats = evaluate(gt_path, run_dir / "detections.json", run_dir / "evaluate.log")
    return {
        "map": stats["map"], "map_50": stats["map_50"], "wall_s": peer["train_s"], "epochs": peer["epochs"],
        "latency_ms": peer["latency_ms"], "gflops": peer["gflops"], "input": peer["input"],
        "params_m": peer["params_m"], "versions": peer["versions"], "unreadable": unreadable,
    }  # fmt: skip
