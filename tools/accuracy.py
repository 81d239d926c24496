"""Accuracy side by side: a detkit detector and torchvision's FCOS trained through the same harness.

Both models get the same Shapes images and augmentation, the same optimizer (AdamW with linear
warm-up and cosine decay, gradient clipping), the same number of epochs and the same
post-processing limits (score >= 0.05, NMS 0.6, 100 detections), and are scored by the same
:class:`detkit.evaluation.CocoEvaluator` (COCO mAP) on the Shapes test split. Random init for
both (nothing is downloaded).

    python -m tools.accuracy --config configs/fcos_r50_fpn_coco.yaml --epochs 4 --size 128
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from detkit.data import DetectionDataModule, ShapesReader
from detkit.evaluation import CocoEvaluator
from tools.benchmark import detkit_detector, torchvision_detector


def train_and_evaluate(name: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    data = DetectionDataModule(
        train=ShapesReader(args.train_images, seed=0), val=ShapesReader(8, seed=1),
        test=ShapesReader(args.test_images, seed=2), input_size=args.size, batch_size=args.batch,
        num_workers=args.workers,
    )  # fmt: skip
    data.setup("fit")
    data.setup("test")
    if name == "detkit":
        model = detkit_detector(args.config, data.num_classes)
    else:
        model = torchvision_detector(name, data.num_classes, args.size)
        model.score_thresh, model.nms_thresh, model.detections_per_img = 0.05, 0.6, 100
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    loader = data.train_dataloader()
    total = args.epochs * len(loader)
    warmup = min(100, total // 5)
    schedule = lambda step: (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for images, targets in loader:
            if name == "detkit":
                loss = model.loss(images, targets)["loss"]
            else:
                loss = sum(model(list(images), [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]).values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()
            scheduler.step()
    train_s = time.perf_counter() - start

    model.eval()
    evaluator = CocoEvaluator()
    with torch.inference_mode():
        for images, targets in data.test_dataloader():
            detections = model.predict_batch(images) if name == "detkit" else model(list(images))
            evaluator.update(detections, targets)  # both sides in input pixels
    stats = evaluator.compute()
    return {"model": name, "map": stats["map"], "map_50": stats["map_50"], "train_s": train_s, "final_loss": float(loss.detach())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, action="append", help="detkit config(s) whose model.detector is trained; "
                        "later ones override (default: configs/fcos_r50_fpn_coco.yaml)")  # fmt: skip
    parser.add_argument("--models", nargs="+", default=["detkit", "torchvision_fcos_resnet50_fpn"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-images", type=int, default=600)
    parser.add_argument("--test-images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write {'rows': [...]} here")
    args = parser.parse_args()
    args.config = args.config or [Path("configs/fcos_r50_fpn_coco.yaml")]
    rows = [train_and_evaluate(name, args) for name in args.models]
    print(f"\nShapes: {args.train_images} train images x {args.epochs} epochs at {args.size} px, batch {args.batch}, "
          f"AdamW lr {args.lr}; COCO mAP on {args.test_images} test images\n")  # fmt: skip
    print(f"{'model':36s} {'mAP':>7s} {'mAP50':>7s} {'train s':>8s} {'last loss':>10s}")
    for row in rows:
        print(f"{row['model']:36s} {row['map']:7.3f} {row['map_50']:7.3f} {row['train_s']:8.0f} {row['final_loss']:10.3f}")
    if len(rows) > 1:
        print(f"\ndetkit mAP - {rows[1]['model']} mAP = {rows[0]['map'] - rows[1]['map']:+.3f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
