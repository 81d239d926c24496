"""What a run folder holds for a report: checkpoint, saved config, training log, exports; and the machine and library versions."""

from __future__ import annotations

import csv
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from detkit.machine import cpu_description

__all__ = ["RunFolder", "checkpoint_facts", "export_rows", "inspect_run", "last_row", "library_versions", "machine", "wall_time"]

_EXPORT_SUFFIXES = (".onnx", ".torchscript")


@dataclass
class RunFolder:
    """The files of a run's ``default_root_dir`` (or of a ``detkit evaluate --out`` folder) a report reads.

    Attributes:
        root: the folder.
        checkpoint: ``checkpoints/best.ckpt``, else ``last.ckpt``, else the newest other ``.ckpt`` there.
        config: the config ``detkit fit`` saved (``csv/version_N/config.yaml`` of the training log),
            else the newest ``config.yaml`` under ``root``.
        metrics: the training log: the newest ``metrics.csv`` with ``train/`` columns.
        test_metrics: the newest ``metrics.csv`` with ``test/`` columns (``detkit test``).
        evaluation: ``(ground_truth.json, detections.json)`` in ``root`` (``detkit evaluate --out``).
        exports: exported models (``.onnx``, ``.torchscript``) under ``root/export``.
    """

    root: Path
    checkpoint: Path | None = None
    config: Path | None = None
    metrics: Path | None = None
    test_metrics: Path | None = None
    evaluation: tuple[Path, Path] | None = None
    exports: list[Path] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing a report can show."""
        return not (self.checkpoint or self.metrics or self.test_metrics or self.evaluation)


def _header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


def inspect_run(root: str | Path) -> RunFolder:
    """Find what :class:`RunFolder` lists under ``root`` (nothing is read but csv headers)."""
    root = Path(root)
    run = RunFolder(root)
    if (root / "ground_truth.json").is_file() and (root / "detections.json").is_file():
        run.evaluation = (root / "ground_truth.json", root / "detections.json")
    for name in ("best.ckpt", "last.ckpt"):
        if (root / "checkpoints" / name).is_file():
            run.checkpoint = root / "checkpoints" / name
            break
    else:
        others = sorted(root.glob("checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime)
        run.checkpoint = others[-1] if others else None
    logs = sorted((p for p in root.glob("**/metrics.csv") if "report" not in p.relative_to(root).parts[:1]),
                  key=lambda p: p.stat().st_mtime)  # fmt: skip
    headers = {p: _header(p) for p in logs}
    train = [p for p in logs if any(c.startswith("train/") for c in headers[p])]
    test = [p for p in logs if any(c.startswith("test/") for c in headers[p])]
    run.metrics = train[-1] if train else None
    run.test_metrics = test[-1] if test else None
    if run.metrics is not None and (run.metrics.parent / "config.yaml").is_file():
        run.config = run.metrics.parent / "config.yaml"
    else:
        configs = sorted(root.glob("**/config.yaml"), key=lambda p: p.stat().st_mtime)
        run.config = configs[-1] if configs else None
    if (root / "export").is_dir():
        run.exports = sorted(p for p in (root / "export").rglob("*") if p.suffix in _EXPORT_SUFFIXES and p.is_file())
    return run


def last_row(metrics: Path, prefix: str) -> dict[str, float]:
    """The last logged value of each ``prefix`` column of a ``metrics.csv`` (e.g. ``test/``)."""
    values: dict[str, float] = {}
    with metrics.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, cell in row.items():
                if key and key.startswith(prefix) and cell not in ("", None):
                    values[key] = float(cell)
    return values


def checkpoint_facts(path: Path) -> dict[str, Any]:
    """Epoch, step, Lightning version, classes and input size of a checkpoint (``{}`` if unreadable)."""
    from detkit.checkpoints import read_checkpoint

    try:
        checkpoint = read_checkpoint(path)
    except (FileNotFoundError, ValueError):
        return {}
    block = checkpoint["detkit"]
    facts = {"epoch": checkpoint.get("epoch"), "global step": checkpoint.get("global_step"),
             "trained with Lightning": checkpoint.get("pytorch-lightning_version"),
             "classes": len(block.get("class_names") or []), "input size": block.get("input_size")}  # fmt: skip
    timer = next((v for k, v in (checkpoint.get("callbacks") or {}).items() if str(k).startswith("Timer")), None)
    if isinstance(timer, dict) and isinstance(timer.get("time_elapsed"), dict):
        facts["training time (Timer)"] = _duration(float(timer["time_elapsed"].get("train", 0.0)))
    return {k: v for k, v in facts.items() if v is not None}


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def wall_time(run: RunFolder) -> str | None:
    """The training's wall time estimated from file times: its saved ``config.yaml`` (written when
    ``fit`` starts) to the last write of its ``metrics.csv``; ``None`` without both."""
    if run.metrics is None or not (run.metrics.parent / "config.yaml").is_file():
        return None
    seconds = run.metrics.stat().st_mtime - (run.metrics.parent / "config.yaml").stat().st_mtime
    return f"about {_duration(seconds)} (file times: config.yaml at start to metrics.csv's last write)" if seconds >= 0 else None


def _gpus() -> str:
    if "torch" in sys.modules:  # already imported (a checkpoint was evaluated): ask it
        torch = sys.modules["torch"]
        if torch.cuda.is_available():
            return ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return "none (torch.cuda.is_available() is False)"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20, check=True).stdout  # fmt: skip
            return ", ".join(line.strip() for line in out.splitlines() if line.strip()) or "none"
        except (OSError, subprocess.SubprocessError):
            return "unknown (nvidia-smi failed)"
    return "none found (no nvidia-smi)"


def machine() -> dict[str, str]:
    """CPU model and cores, GPUs, OS and Python of the machine making the report."""
    return {"CPU": cpu_description(), "GPU": _gpus(),
            "OS": platform.platform(), "Python": platform.python_version()}  # fmt: skip


def library_versions() -> dict[str, str]:
    """Installed versions of detkit and the libraries it stands on."""
    out = {}
    for name in ("detkit", "torch", "torchvision", "lightning", "torchmetrics", "numpy", "albumentations"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def export_rows(run: RunFolder) -> list[dict[str, Any]]:
    """One row per exported model: file, format, size and what its sidecar says (input size, threshold, int8)."""
    from detkit.evaluation.cocojson import read_json

    rows = []
    for path in run.exports:
        row: dict[str, Any] = {"file": str(path.relative_to(run.root)), "format": path.suffix.lstrip("."),
                               "size MB": round(path.stat().st_size / 1e6, 2)}  # fmt: skip
        side = path.with_name(path.name + ".json")
        try:
            info = read_json(side) if side.is_file() else {}
        except ValueError:
            info = {}
        row["input size"] = info.get("input_size", "-")
        row["score threshold"] = info.get("score_threshold", "-")
        row["int8"] = "yes" if info.get("int8") or ".int8." in path.name else "no"
        row["sidecar"] = "yes" if info else "missing"
        rows.append(row)
    return rows
