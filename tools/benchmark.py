"""Speed benchmark: a detkit detector against torchvision's FCOS and RetinaNet, measured in one run.

For each model (each in its own subprocess, so peak memory is its own): training images/s
(forward + backward + optimizer step, after warm-up), inference latency at batch 1 and images/s at
batch 16 (post-processing included), peak memory, GFLOPs per image (inference forward) and
parameters. Every model gets the same images, targets, input size, batch size, precision and
device; torchvision models are built with random weights, ``min_size = max_size = --size`` (so
they do not resize to 800 px) and the same number of classes.

    python -m tools.benchmark --config configs/fcos_r50_fpn_coco.yaml --device cpu --size 512 --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

PEERS = ("torchvision_fcos_resnet50_fpn", "torchvision_retinanet_resnet50_fpn")


def detkit_detector(configs: list[Path], num_classes: int) -> torch.nn.Module:
    """The ``model.detector`` of detkit configs (later files override), parsed by the same CLI as
    ``detkit fit``, with random backbone weights (never downloaded; speed does not depend on them)."""
    from detkit.training.cli import parse_config
    from detkit.inference import instantiate_detector

    config = parse_config([f"--config={path}" for path in configs])
    return instantiate_detector(config.model.detector.as_dict(), num_classes, pretrained_backbone=False)


def make_batch(size: int, batch: int, num_classes: int) -> tuple[torch.Tensor, list[dict]]:
    """``batch`` letterboxed Shapes images at ``size`` px with their targets (deterministic)."""
    from detkit.data import EvalTransform, ShapesReader, TransformedDataset, collate_detection

    reader = ShapesReader(batch, seed=123, min_image_size=size // 2, max_image_size=size)
    data = TransformedDataset(reader, EvalTransform(size))
    images, targets = collate_detection([data[i] for i in range(batch)])
    for t in targets:
        t["labels"] = t["labels"] % num_classes
    return images, targets


def torchvision_detector(name: str, num_classes: int, size: int, from_scratch: bool = False) -> torch.nn.Module:
    """torchvision's FCOS / RetinaNet ResNet-FPN with random weights, ``min_size = max_size = size``.

    By default as its builders make them for fine-tuning a pretrained backbone (FrozenBatchNorm2d,
    stem and layer1 frozen: ``trainable_backbone_layers=3``; detkit's configs freeze the same way with
    ``frozen_stages: 1``, ``freeze_norm``); with ``from_scratch`` as they make them without
    pretrained weights (BatchNorm2d, every layer trained: ``trainable_backbone_layers=5``).
    Names: ``torchvision_{fcos,retinanet}_resnet{18,50}_fpn``.
    """
    from torchvision.models import resnet18, resnet50
    from torchvision.models.detection import FCOS, RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7
    from torchvision.ops.misc import FrozenBatchNorm2d

    builders = {"fcos": FCOS, "retinanet": RetinaNet}
    depths = {"resnet18": resnet18, "resnet50": resnet50}
    parts = name.split("_")
    if len(parts) != 4 or parts[0] != "torchvision" or parts[1] not in builders or parts[2] not in depths or parts[3] != "fpn":
        raise ValueError(f"unknown peer {name!r}; choose from torchvision_{{fcos,retinanet}}_resnet{{18,50}}_fpn")
    body = depths[parts[2]](weights=None, norm_layer=torch.nn.BatchNorm2d if from_scratch else FrozenBatchNorm2d)
    trainable = 5 if from_scratch else 3
    backbone = _resnet_fpn_extractor(body, trainable, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
    return builders[parts[1]](backbone, num_classes, min_size=size, max_size=size)


class Runner:
    """Uniform train/infer calls over detkit and torchvision detectors."""

    def __init__(self, name: str, configs: list[Path], num_classes: int, size: int) -> None:
        self.name = name
        if name == "detkit":
            self.model = detkit_detector(configs, num_classes)
        else:
            self.model = torchvision_detector(name, num_classes, size)

    def train_step(self, images: torch.Tensor, targets: list[dict], optimizer: torch.optim.Optimizer) -> None:
        if self.name == "detkit":
            loss = self.model.loss(images, targets)["loss"]
        else:
            tv_targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
            loss = sum(self.model(list(images), tv_targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer(self, images: torch.Tensor) -> list[dict]:
        if self.name == "detkit":
            return self.model.predict_batch(images)
        return self.model(list(images))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / steps


def measure(name: str, args: argparse.Namespace) -> dict:
    """All numbers for one model (runs inside its own process)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    runner = Runner(name, args.config, args.num_classes, args.size)
    model = runner.model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model.compile()  # compiles forward; warm-up iterations absorb the compilation
    images, targets = make_batch(args.size, max(args.batch, args.infer_batch), args.num_classes)
    images = images.to(device)
    targets = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
    autocast = lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)  # noqa: E731

    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    model.eval()
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        runner.infer(images[:1])
    gflops = counter.get_total_flops() / 1e9  # a multiply-add counts as 2 FLOPs

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    train_images, train_targets = images[: args.batch], targets[: args.batch]

    def train() -> None:
        with autocast():
            runner.train_step(train_images, train_targets, optimizer)

    train_s = _timed(train, args.steps, args.warmup, device)
    model.eval()

    def infer(batch: torch.Tensor):
        def run() -> None:
            with torch.inference_mode(), autocast():
                runner.infer(batch)

        return run

    bs1_s = _timed(infer(images[:1]), args.steps, args.warmup, device)
    bsn_s = _timed(infer(images[: args.infer_batch]), max(1, args.steps // 2), 1, device)
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "model": name,
        "train_img_s": args.batch / train_s,
        "infer_bs1_ms": bs1_s * 1000,
        "infer_img_s": args.infer_batch / bsn_s,
        "peak_mem_mb": peak_mb,
        "gflops": gflops,
        "params_m": params_m,
    }


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    base = rows[0]
    print(
        f"\ndevice={args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else os.cpu_count()} "
        f"{'' if args.device.startswith('cuda') else 'CPU threads'}), size={args.size}, batch={args.batch}, "
        f"infer batch={args.infer_batch}, precision={args.precision}, torch {torch.__version__}\n"
    )
    header = f"{'model':38s} {'train img/s':>12s} {'infer bs1 ms':>13s} {'infer img/s':>12s} {'peak MB':>9s} {'GFLOPs':>8s} {'params M':>9s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['model']:38s} {row['train_img_s']:12.2f} {row['infer_bs1_ms']:13.1f} {row['infer_img_s']:12.2f} "
            f"{row['peak_mem_mb']:9.0f} {row['gflops']:8.1f} {row['params_m']:9.2f}"
        )
    print("\nratios detkit / peer (train speed, bs1 speed = peer ms / detkit ms, batch speed):")
    for row in rows[1:]:
        print(
            f"  vs {row['model']:36s} train x{base['train_img_s'] / row['train_img_s']:.2f}   "
            f"bs1 x{row['infer_bs1_ms'] / base['infer_bs1_ms']:.2f}   batch x{base['infer_img_s'] / row['infer_img_s']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, action="append", help="detkit config(s) whose model.detector is measured; "
                        "later ones override (default: configs/fcos_r50_fpn_coco.yaml)")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512, help="square input size in pixels")
    parser.add_argument("--batch", type=int, default=2, help="training batch size")
    parser.add_argument("--infer-batch", type=int, default=16, help="batch size of the throughput measurement")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed", "16-mixed"])
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations before timing")
    parser.add_argument("--channels-last", action="store_true", help="run every model in channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model's forward")
    parser.add_argument("--models", nargs="+", default=["detkit", *PEERS])
    parser.add_argument("--json", type=Path, help="write {'rows': [...]} here, detkit's row first")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print its JSON row
    args = parser.parse_args()
    args.config = args.config or [Path("configs/fcos_r50_fpn_coco.yaml")]
    if args.one:
        print("ROW " + json.dumps(measure(args.one, args)))
        return
    rows = []
    for name in args.models:
        cmd = [sys.executable, "-m", "tools.benchmark", *sys.argv[1:], "--one", name]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr[-4000:]}")
        rows.append(json.loads(next(line[4:] for line in done.stdout.splitlines() if line.startswith("ROW "))))
    print_table(rows, args)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
