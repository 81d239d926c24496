"""One tuning trial in its own process: ``detkit fit`` with the trial's overrides, then what it costs.

Run by :mod:`detkit.tuning.study` as ``python -m detkit.tuning.trial RESULT.json [--latency onnx|flops]
[--prune STUDY STORAGE] -- FIT_ARGS...``; writes one json with the trial's measurements. A process of
its own per trial keeps each trial's peak memory its own and lets a crashed or killed trial fail
alone.
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
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["detector_gflops", "main", "measure_onnx_latency"]


def detector_gflops(detector: torch.nn.Module, side: int) -> float:
    """Forward GFLOPs of ``detector`` on one ``side x side`` image (a multiply-add counts 2, as torch counts)."""
    detector.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        detector(torch.zeros(1, 3, side, side))
    return counter.get_total_flops() / 1e9


def measure_onnx_latency(onnx_path: str | Path, runs: int = 30, timeout: float = 600) -> float:
    """Median batch-1 latency (ms) of a ``detkit export`` ONNX file, measured by onnxruntime in a fresh process."""
    script = f"""
import json, statistics, time
import numpy as np
from detkit.deploy import OnnxPredictor
model = OnnxPredictor({str(onnx_path)!r})
side = model.input_size + (-model.input_size % model.pad_multiple)
image = np.random.default_rng(0).integers(0, 256, (1, 3, side, side), dtype=np.uint8)
for _ in range(3):
    model.run(image)
times = []
for _ in range({runs}):
    start = time.perf_counter(); model.run(image); times.append(time.perf_counter() - start)
print(json.dumps({{"ms": 1000 * statistics.median(times)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"latency measurement of {onnx_path} failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["ms"])


def _pruning_callback(study: str, storage: str) -> list[str]:
    init = json.dumps({"class_path": "detkit.tuning.pruning.MapPruning", "init_args": {"study_name": study, "storage": storage}})
    return [f"--trainer.callbacks+={init}"]


def run(fit_args: list[str], latency: str, prune: tuple[str, str] | None) -> dict[str, Any]:
    """Train with ``fit_args`` and measure the result (see the module docstring)."""
    from detkit.inference import load_detector
    from detkit.training.cli import build_cli
    from detkit.tuning.pruning import MapPruning

    start = time.perf_counter()
    cli = build_cli(["fit", *fit_args, *(_pruning_callback(*prune) if prune else [])])
    fit_s = time.perf_counter() - start
    trainer, module = cli.trainer, cli.model
    pruning = [c for c in trainer.callbacks if isinstance(c, MapPruning)]
    best = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
    score = getattr(trainer.checkpoint_callback, "best_model_score", None)
    batch_size = cli.datamodule.batch_size
    result: dict[str, Any] = {
        "map": float(score) if score is not None else None,
        "pruned": bool(pruning and pruning[0].pruned),
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "fit_s": fit_s,
        "train_images_per_s": trainer.global_step * batch_size / fit_s if fit_s > 0 else None,
        "params_m": sum(p.numel() for p in module.detector.parameters()) / 1e6,
        "checkpoint": best,
    }
    side = module.input_size + (-module.input_size % module.pad_multiple)
    result["gflops"] = detector_gflops(module.detector.cpu(), side)
    if latency == "onnx" and best and not result["pruned"]:
        from detkit.deploy import export_model

        onnx_path = export_model(load_detector(best), Path(best).parent.parent / "export" / "model.onnx")
        result["latency_ms"] = measure_onnx_latency(onnx_path)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m detkit.tuning.trial", allow_abbrev=False)
    parser.add_argument("result", type=Path)
    parser.add_argument("--latency", choices=["onnx", "flops"], default="onnx")
    parser.add_argument("--prune", nargs=2, metavar=("STUDY", "STORAGE"))
    options = parser.parse_args(argv[:split])
    start = time.perf_counter()
    result = run(argv[split + 1 :], options.latency, tuple(options.prune) if options.prune else None)
    result["wall_s"] = time.perf_counter() - start
    result["pid"] = os.getpid()
    options.result.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
