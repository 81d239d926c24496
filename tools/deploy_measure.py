"""Measurements of ``tools/deploy_report.py``: one variant's mAP on the test split, latency, throughput, size, FLOPs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from detkit.commands.evaluate import evaluate_checkpoint
from detkit.evaluation.cocoeval import evaluate_coco
from detkit.inference import BasePredictor, Predictor

Detect = Callable[[torch.Tensor], list[dict[str, torch.Tensor]]]


def detect_fn(model: BasePredictor) -> Detect:
    """``float [B, 3, S, S]`` letterboxed images in ``[0, 1]`` -> detections in input pixels, for any predictor."""
    return model.predict_batch


def test_map(path: Path, configs: list[str]) -> dict[str, float]:
    """COCO map / map_50 of a checkpoint or export on the configs' test split: ``detkit evaluate --ckpt_path``'s own path."""
    gt, dt = evaluate_checkpoint(Path(path), [Path(c) for c in configs], [])
    stats = dict(evaluate_coco(gt, dt).stats)
    return {"map": stats["map"], "map_50": stats["map_50"]}


def _loaded(kind: str, path: str, threads: int) -> Detect:
    """The detect function of one variant: ``pytorch`` (a checkpoint), ``onnx``, ``torchscript``
    (detkit exports) or ``onnx-raw`` (any ONNX model taking float images, e.g. Ultralytics')."""
    from detkit.deploy import OnnxPredictor, TorchScriptPredictor
    from detkit.inference import load_detector

    if kind == "pytorch":
        return detect_fn(load_detector(path))
    if kind == "onnx":
        return detect_fn(OnnxPredictor(path, threads))
    if kind == "torchscript":
        return detect_fn(TorchScriptPredictor(path))
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda images: session.run(None, {name: images.numpy()})


def _time_here(kind: str, path: str, image_path: str, threads: int, runs: int, batch8: bool = True) -> dict[str, float]:
    torch.set_num_threads(threads)
    detect = _loaded(kind, path, threads)
    image = torch.from_numpy(np.load(image_path))
    one, eight = image[None], image[None].expand(8, -1, -1, -1).contiguous()
    result = {}
    with torch.inference_mode():
        for batch, key, count in ((one, "latency_ms", runs), (eight, "batch8_ms", max(10, runs // 5)))[: 2 if batch8 else 1]:
            for _ in range(5):
                detect(batch)
            times = []
            for _ in range(count):
                start = time.perf_counter()
                detect(batch)
                times.append((time.perf_counter() - start) * 1000)
            result[key] = statistics.median(times)
    return result


def isolated_speed(variants: dict[str, tuple[str, str]], image: torch.Tensor, threads: int, runs: int = 100,
                   scratch: Path = Path("."), rounds: int = 3) -> dict[str, dict[str, float]]:  # fmt: skip
    """Latency at batch 1 (median of ``runs`` calls) and throughput at batch 8 (images/s, median of
    ``runs // 5`` batches) of each variant ``name -> (kind, path)`` (see :func:`_loaded`) on one
    letterboxed test image ``[3, S, S]``: network, decoding and NMS.

    Each variant is timed in a process of its own (thread pools of several runtimes in one process
    slow each other down, by 2x measured here), in ``rounds`` rounds, every other one in reverse
    order; each keeps its fastest round, so a noisy neighbour during one measurement does not
    decide a row.
    """
    image_path = scratch / "timing_image.npy"
    np.save(image_path, image.numpy())
    best: dict[str, dict[str, float]] = {}
    for order in (list(variants)[:: 1 if r % 2 == 0 else -1] for r in range(rounds)):
        for name in order:
            kind, path = variants[name]
            done = subprocess.run([sys.executable, "-m", "tools.deploy_measure", kind, str(path), str(image_path), str(threads),
                                   str(runs)], capture_output=True, text=True, check=True)  # fmt: skip
            timing = json.loads(done.stdout.strip().splitlines()[-1])
            mine = best.setdefault(name, timing)
            best[name] = {key: min(mine[key], timing[key]) for key in timing}
    return {name: {"latency_ms": t["latency_ms"], "throughput": 8000.0 / t["batch8_ms"]} for name, t in best.items()}


def paired_latency(paths: list[Path], image_path: Path, threads: int, runs: int, rounds: int) -> list[dict[str, float]]:
    """Batch-1 latency of detkit ONNX exports, each timed ``rounds`` times in processes of its own,
    the variants back to back within a round: per variant, the median over rounds of its latency
    and of its ratio to ``paths[0]`` in the same round (slow drifts of a shared machine hit both
    sides of a ratio alike), with the ratios' range."""
    per_round = []
    for r in range(rounds):
        order = list(range(len(paths)))[:: 1 if r % 2 == 0 else -1]
        times = {}
        for i in order:
            done = subprocess.run([sys.executable, "-m", "tools.deploy_measure", "onnx", str(paths[i]), str(image_path), str(threads),
                                   str(runs), "bs1"], capture_output=True, text=True, check=True)  # fmt: skip
            times[i] = json.loads(done.stdout.strip().splitlines()[-1])["latency_ms"]
        per_round.append(times)
    result = []
    for i, path in enumerate(paths):
        ratios = [t[0] / t[i] for t in per_round]
        result.append({"path": str(path), "latency_ms": statistics.median(t[i] for t in per_round),
                       "speedup": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios)})  # fmt: skip
    return result


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


if __name__ == "__main__":  # one variant's timing, in its own process (see isolated_speed)
    kind, path, image_path, threads, runs = sys.argv[1:6]
    print(json.dumps(_time_here(kind, path, image_path, int(threads), int(runs), batch8=sys.argv[6:] != ["bs1"])))
