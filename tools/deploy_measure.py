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


def interleaved_speed(detects: dict[str, Detect], image: torch.Tensor, runs: int = 100) -> dict[str, dict[str, float]]:
    """Latency at batch 1 (median of ``runs`` calls) and throughput at batch 8 (images/s, median of
    ``runs // 5`` batches) of each variant on one letterboxed test image ``[3, S, S]``: network,
    decoding and NMS. Variants take turns call by call, so a noisy neighbour slows all alike."""
    one, eight = image[None], image[None].expand(8, -1, -1, -1).contiguous()
    times: dict[str, dict[str, list[float]]] = {name: {"one": [], "eight": []} for name in detects}
    with torch.inference_mode():
        for batch, key, count in ((one, "one", runs), (eight, "eight", max(10, runs // 5))):
            for detect in detects.values():
                for _ in range(3):
                    detect(batch)
            for _ in range(count):
                for name, detect in detects.items():
                    start = time.perf_counter()
                    detect(batch)
                    times[name][key].append((time.perf_counter() - start) * 1000)
    return {
        name: {"latency_ms": statistics.median(t["one"]), "throughput": 8000.0 / statistics.median(t["eight"])}
        for name, t in times.items()
    }


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
