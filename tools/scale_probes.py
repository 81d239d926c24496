"""What ``tools.bench_scale`` measures in fresh processes, one json line each: a training epoch's loader workers, ``detkit predict``.

::

    python -m tools.scale_probes epoch IMAGES_DIR ANN_FILE --workers 2
    python -m tools.scale_probes predict IMAGES_DIR OUT_DIR

Run from the repository root, from a small parent: a process's ``ru_maxrss`` starts from the
peak of the process it was started from.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _pss_mb(pid: int) -> float:
    """Proportional set size of process ``pid`` (shared pages divided among their sharers)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def epoch(images: Path, annotations: Path, workers: int, batch_size: int, input_size: int) -> dict:
    """One full training epoch of the DataLoader alone (no model): each worker's PSS after its first
    batch came back and after the last batch of the epoch, before the workers stop."""
    import psutil

    from detkit.data import CocoReader, DetectionDataModule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic json's clipped / dropped boxes are counted in warnings
        reader = CocoReader(images, annotations).load()
    data = DetectionDataModule(train=reader, val=reader, input_size=input_size, pad_multiple=32,
                               batch_size=batch_size, num_workers=workers)  # fmt: skip
    data.setup("fit")
    loader = data.train_dataloader()
    me = psutil.Process()
    start, first, images_seen = time.perf_counter(), None, 0
    for k, (batch, _) in enumerate(loader):
        images_seen += len(batch)
        if k == 0:
            first = {p.pid: _pss_mb(p.pid) for p in me.children()}
        if k == len(loader) - 1:  # the workers are still up
            last = {p.pid: _pss_mb(p.pid) for p in me.children()}
    seconds = time.perf_counter() - start
    growth = [last[pid] - first[pid] for pid in first if pid in last]
    return {"workers": workers, "images": images_seen, "batches": len(loader), "seconds": seconds,
            "pss_first_mb": sorted(first.values()), "pss_last_mb": sorted(last.values()),
            "growth_mb": sorted(growth), "main_peak_mb": _peak_mb()}  # fmt: skip


def predict(images: Path, out: Path, batch_size: int, input_size: int, workers: int, threads: int) -> dict:
    """``detkit predict`` over the folder with a narrow (untrained) shapes demo detector keeping every
    candidate up to 100 an image (score threshold 0), in this process: wall time, peak RSS, the size of
    ``predictions.json``."""
    from detkit.training.callbacks import PredictionWriter
    from detkit.training.cli import build_cli

    decoder = {"class_path": "detkit.models.DenseDecoder", "init_args": {"score_threshold": 0.0, "max_detections": 100}}
    args = [
        "predict", "--config", str(REPO / "configs" / "shapes.yaml"),
        "--trainer.default_root_dir", str(out), "--trainer.logger", "false", "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.detector.init_args.backbone.init_args.widths", "[8, 8, 16, 16, 16]",  # the loop, not the model, is measured
        "--model.detector.init_args.neck.init_args.out_channels", "16",
        "--model.detector.init_args.head.init_args.decoder", json.dumps(decoder),
        "--data.predict", json.dumps({"class_path": "detkit.data.FolderReader", "init_args": {"images": str(images)}}),
        "--data.batch_size", str(batch_size), "--data.num_workers", str(workers), "--data.input_size", str(input_size),
        "--predictions.max_drawn", "0",
    ]  # fmt: skip
    import torch

    torch.set_num_threads(threads)  # one: on a shared machine more threads mostly wait for each other
    base = _peak_mb()
    start = time.perf_counter()
    cli = build_cli(args=args)
    seconds = time.perf_counter() - start
    [writer] = [c for c in cli.trainer.callbacks if isinstance(c, PredictionWriter)]
    return {"images": len(cli.datamodule.predict_dataset), "seconds": seconds, "peak_mb": _peak_mb(), "base_mb": base,
            "output_mb": writer.path.stat().st_size / 2**20}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="probe", required=True)
    one = sub.add_parser("epoch")
    one.add_argument("images", type=Path)
    one.add_argument("annotations", type=Path)
    one.add_argument("--workers", type=int, default=2)
    one.add_argument("--batch_size", type=int, default=32)
    one.add_argument("--input_size", type=int, default=64)
    two = sub.add_parser("predict")
    two.add_argument("images", type=Path)
    two.add_argument("out", type=Path)
    two.add_argument("--batch_size", type=int, default=64)
    two.add_argument("--input_size", type=int, default=64)
    two.add_argument("--workers", type=int, default=0)
    two.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    if args.probe == "epoch":
        result = epoch(args.images, args.annotations, args.workers, args.batch_size, args.input_size)
    else:
        result = predict(args.images, args.out, args.batch_size, args.input_size, args.workers, args.threads)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
