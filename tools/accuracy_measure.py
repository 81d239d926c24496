"""Measurements shared by the rows of ``tools/accuracy.py``: logged subprocesses, COCO scoring, CPU latency, FLOPs, the CPU, the shared data."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from detkit.training.cli import parse_config
from detkit.data import DetectionDataModule
from detkit.evaluation import CocoEvaluator
from detkit.evaluation.cocojson import ground_truth_to_coco, write_json
from detkit.ops.letterbox import to_original_pixels

REPO = Path(__file__).resolve().parents[1]


# ---- helpers ------------------------------------------------------------------------------------
def config_args(configs: list[str]) -> list[str]:
    return [f"--config={path}" for path in configs]


def run_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` from the repository root with its output in ``log``; its wall time in seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({done.returncode}); log {log}:\n{tail}")
    return wall


def stats_from(stdout_log: Path) -> dict[str, float]:
    """The stats json that ``detkit evaluate`` prints as its last stdout line."""
    for line in reversed(stdout_log.read_text().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no stats json in {stdout_log}")


def evaluate(gt: Path, dt: Path, log: Path) -> dict[str, float]:
    """``detkit evaluate --gt gt --dt dt``: the 12 COCO stats."""
    run_logged([sys.executable, "-m", "detkit", "evaluate", "--gt", str(gt), "--dt", str(dt)], log)
    return stats_from(log)


def cpu_latency_ms(fn: Callable[[], Any], threads: int = 0, warmup: int = 3, runs: int = 20) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` untimed calls, on ``threads``
    CPU threads (``0``: torch's default)."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        torch.set_num_threads(default)
    return statistics.median(times)


def gflops(fn: Callable[[], Any]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def cpu_description() -> dict[str, str]:
    """CPU model and flags (``lscpu``), core count and torch threads."""
    info = {"model": platform.processor() or platform.machine(), "flags": ""}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        info["model"] = fields.get("Model name", info["model"]).strip()
        info["flags"] = fields.get("Flags", "").strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    info["cores"] = str(os.cpu_count())
    info["torch_threads"] = str(torch.get_num_threads())
    info["torch"] = torch.__version__
    return info


def max_time_arg(seconds: float) -> str:
    seconds = max(1, int(seconds))
    return f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ---- the shared data ----------------------------------------------------------------------------
def data_overrides(args: argparse.Namespace) -> list[str]:
    """What every row's data gets from the harness: ``--size`` and ``--batch``."""
    return [f"--data.input_size={args.size}", f"--data.batch_size={args.batch}"]


def data_args(args: argparse.Namespace) -> list[str]:
    """The ``detkit fit`` arguments of the harness's data: ``--data-config`` at ``--size`` and ``--batch``."""
    return [*config_args(args.data_config), *data_overrides(args)]


def check_same_data(name: str, configs: list[str], reference: Any) -> None:
    """Refuse a detkit row whose readers differ from the harness's data (one table, one split)."""
    data = parse_config(config_args(configs)).data
    for split in ("train", "val", "test"):
        mine, theirs = data.get(split), reference.get(split)
        mine = mine.as_dict() if hasattr(mine, "as_dict") else mine
        theirs = theirs.as_dict() if hasattr(theirs, "as_dict") else theirs
        if mine != theirs:
            raise ValueError(f"row {name} ({configs}) reads other {split} data than --data-config: {mine} != {theirs}")


def write_ground_truth(datamodule: DetectionDataModule, path: Path) -> None:
    """The test split's ground truth as ``detkit evaluate --ckpt_path`` scores it (same code path)."""
    datamodule.setup("test")
    evaluator = CocoEvaluator()
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    for _, targets in datamodule.test_dataloader():
        evaluator.update(*to_original_pixels([dict(empty) for _ in targets], targets))
    gt, _ = evaluator.coco_inputs(datamodule.class_names, datamodule.category_ids)
    write_json(path, ground_truth_to_coco(gt))


def first_test_image(datamodule: DetectionDataModule) -> np.ndarray:
    """The first test image, ``uint8 [H, W, 3]`` RGB (for the latency and FLOPs of every row)."""
    image, _ = datamodule.reader("test")[0]
    return image
