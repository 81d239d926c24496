"""Measurements of ``tools/deploy_report.py``: one variant's mAP on the test split, latency, throughput, size, FLOPs."""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

from detkit.data import DetectionDataModule
from detkit.evaluation import CocoEvaluator
from detkit.evaluation.cocoeval import evaluate_coco
from detkit.inference import Predictor
from detkit.module import to_original_pixels

Detect = Callable[[torch.Tensor], list[dict[str, torch.Tensor]]]


def detect_fn(model: Any) -> Detect:
    """``float [B, 3, S, S]`` letterboxed images in ``[0, 1]`` -> detections in input pixels, for any predictor."""
    return model.detector.predict_batch if isinstance(model, Predictor) else model.predict_batch


def test_map(detect: Detect, datamodule: DetectionDataModule) -> dict[str, float]:
    """COCO map / map_50 of ``detect`` on the test split, scored as ``detkit test`` scores it."""
    datamodule.setup("test")
    evaluator = CocoEvaluator()
    with torch.inference_mode():
        for images, targets in datamodule.test_dataloader():
            evaluator.update(*to_original_pixels(detect(images), targets))
    gt, dt = evaluator.coco_inputs(datamodule.class_names, datamodule.category_ids)
    stats = dict(evaluate_coco(gt, dt).stats)
    return {"map": stats["map"], "map_50": stats["map_50"]}


def timed_ms(fn: Callable[[], Any], runs: int, warmup: int = 5) -> float:
    """Median wall time of ``fn()`` over ``runs`` calls after ``warmup``, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def speed(detect: Detect, side: int, image: torch.Tensor, runs: int = 50) -> dict[str, float]:
    """Latency at batch 1 (median of ``runs``) and throughput at batch 8 (images/s, median of 10
    batches) of the network with decoding and NMS, on one letterboxed test image (``[3, S, S]``)."""
    one, eight = image[None], image[None].expand(8, -1, -1, -1).contiguous()
    with torch.inference_mode():
        latency = timed_ms(lambda: detect(one), runs)
        batch_ms = timed_ms(lambda: detect(eight), 10, warmup=2)
    return {"latency_ms": latency, "throughput": 8000.0 / batch_ms}


def detector_gflops(model: Predictor, side: int) -> float:
    """Forward FLOPs (multiply-add = 2) of the detector at ``1 x 3 x S x S``."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.detector(torch.zeros(1, 3, side, side))
    return counter.get_total_flops() / 1e9


def state_dict_mb(model: Predictor) -> float:
    """Size of the detector's weights as ``torch.save`` writes them."""
    buffer = io.BytesIO()
    torch.save(model.detector.state_dict(), buffer)
    return buffer.tell() / 1e6


def file_mb(path: Path) -> float:
    return path.stat().st_size / 1e6
