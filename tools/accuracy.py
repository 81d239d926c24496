"""Accuracy at one wall-clock budget: detkit configs, torchvision FCOS and Ultralytics YOLO11n, one table.

Every row learns the same training split (raccoon's csv split by default: 160 train / 40 test
images) at one input size and batch size, within one wall-clock budget per training, and every row
is scored by detkit's own evaluator (``detkit evaluate``: COCO mAP@[.5:.95] and mAP50) on the same
test images against the same ground truth, in original image pixels. Nothing is downloaded.

Rows:
- **detkit** (``--detkit NAME=CONFIG[,CONFIG...]``, later configs override; default:
  :data:`DEFAULT_ROWS`): trained by ``detkit fit`` in a subprocess (``--data.input_size``,
  ``--data.batch_size``, ``--seed_everything`` and the epochs set from here; no validation during
  training; a cosine ``T_max`` follows the epochs), the ``last.ckpt`` scored by
  ``detkit evaluate --ckpt_path ... --out``. Each config trains once per ``--seeds`` (default
  0 1 2) and the table gives the median and the range (min-max).
- **torchvision FCOS** (``--peers torchvision_fcos_resnet50_fpn``, or ``..._resnet18_fpn``) built
  as torchvision builds it without pretrained weights (BatchNorm, every layer trained), trained by a
  plain loop on the same DetectionDataModule (the ``--data-config`` data block: same images,
  letterbox, augmentation and mosaic schedule) with AdamW, linear warm-up, cosine decay and gradient
  clipping; post-processing score >= 0.05, NMS 0.6, 100 detections.
- **Ultralytics YOLO11n** (``--peers yolo11n``) trained by Ultralytics itself (``tools/yolo_peer.py``,
  run by ``--yolo-python``: an environment with the ``bench`` extra) from ``yolo11n.yaml`` (no
  weights), ``YOLO_OFFLINE=1``, ``pretrained=False``, ``amp=False``, ``plots=False``, on a copy of
  the split written in YOLO format in a temporary folder; its predictions on the test images
  (``conf=0.001``, ``max_det=100``) are converted to a COCO results json (the test reader's image
  ids and category ids) and scored with ``detkit evaluate --gt --dt``. (Ultralytics' own ``val``
  matches boxes by IoU rather than by score, so its mAP differs from COCO's: slightly for trained
  models, widely for barely trained ones.)

Budget: ``--budget auto`` (default) is the wall time of YOLO11n's ``--yolo-epochs`` (30) epochs on
this machine, measured first; or ``--budget SECONDS``. detkit rows are budget-true: no epoch limit,
``--trainer.max_time`` = the budget less the process's start-up, and the config's ``model.schedule``
(a :class:`detkit.schedule.RunSchedule`) anneals the learning rate to that time (a config without
one is refused; the "budget used" share is printed per run); torchvision FCOS fixes its epochs after its first steps and epoch, and stops at
the budget. ``--epochs N`` instead trains detkit and torchvision rows N epochs each (budget unused).

Columns: mAP, mAP50, training wall time (detkit rows: the whole ``detkit fit`` process, start-up
included), epochs run, CPU latency at batch 1 (median; network + decoding + NMS of one letterboxed
test image, no image decoding; on ``--latency-threads``, default torch's) and GFLOPs of that forward
(a multiply-add is 2 FLOPs), at each model's own input size (``input``), and parameters. The CPU
model and flags are printed with the table.
Run it on an otherwise idle machine: other processes on the cores slow the training (fewer epochs
fit the budget) and distort the latency most (``--latency-threads 1`` is the least sensitive).

Ultralytics in its own environment (same torch; ``--system-site-packages`` sees detkit's)::

    python -m venv --system-site-packages /tmp/yolo && /tmp/yolo/bin/pip install ultralytics

Full table: one training per detkit row and seed plus one per peer, each of the budget (about
800-1,100 s on a 2-core AVX-512 CPU; ``--resume`` reuses finished trainings after an interruption).
Recipes are judged on two opposite datasets, raccoon (default) and BCCD (``--data-config`` twice,
every detkit row given the same two configs first)::

    python -m tools.accuracy --yolo-python /tmp/yolo/bin/python \\
        --detkit csp_scratch=configs/raccoon.yaml \\
        --detkit imagenet_mnv2=configs/raccoon.yaml,configs/raccoon_imagenet.yaml \\
        --json runs/accuracy/table.json --markdown runs/accuracy/table.md
    python -m tools.accuracy --yolo-python /tmp/yolo/bin/python --peers yolo11n \\
        --data-config configs/raccoon.yaml --data-config configs/bccd.yaml \\
        --detkit csp_scratch=configs/raccoon.yaml,configs/bccd.yaml \\
        --out runs/accuracy_bccd --json runs/accuracy_bccd/table.json --markdown runs/accuracy_bccd/table.md

End-to-end check on a tiny budget (minutes): ``--epochs 1 --yolo-epochs 1 --seeds 0``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from detkit.training.cli import build_data, parse_config
from detkit.evaluation.cocojson import read_json
from detkit.inference import load_detector, to_hwc_array
from tools.accuracy_measure import (
    check_same_data,
    config_args,
    cpu_description,
    cpu_latency_ms,
    data_args,
    data_overrides,
    first_test_image,
    gflops,
    max_time_arg,
    run_logged,
    stats_from,
    write_ground_truth,
)
from tools.accuracy_peers import YOLO, train_torchvision, train_yolo


#: detkit rows when no ``--detkit`` is given: name -> configs (later ones override).
DEFAULT_ROWS = {
    "detkit_csp_scratch": ["configs/raccoon.yaml"],
    "detkit_imagenet_mnv2": ["configs/raccoon.yaml", "configs/raccoon_imagenet.yaml"],
}
STARTUP_S = 15.0  # a ``detkit fit`` process's start (imports, readers) before trainer.max_time starts counting

# ---- detkit rows ---------------------------------------------------------------------------------
def check_budget_true(name: str, configs: list[str]) -> None:
    """A budgeted row needs ``model.schedule`` (:class:`detkit.schedule.RunSchedule`): its learning
    rate then follows ``trainer.max_time``, so the row uses its whole budget and ends annealed."""
    if parse_config(config_args(configs)).model.get("schedule") is None:
        raise SystemExit(
            f"{name}: {','.join(configs)} has no model.schedule, so its learning rate cannot follow a time budget; "
            f"add a detkit.schedule.RunSchedule or give --epochs"
        )


def train_detkit(name: str, configs: list[str], seed: int, epochs: int | None, steps_per_epoch: int,
                 budget: float | None, args: argparse.Namespace, run_dir: Path, gt_path: Path,
                 image: np.ndarray) -> dict[str, Any]:  # fmt: skip
    """``detkit fit`` then ``detkit evaluate --ckpt_path`` for one config and seed: for ``epochs``,
    or (``epochs=None``) until ``budget`` seconds of wall time are spent: ``--trainer.max_time`` is
    the budget less the process's start-up and no epoch limit, and the config's ``model.schedule``
    anneals the learning rate to that time."""
    overrides = [
        *data_overrides(args), f"--seed_everything={seed}", f"--trainer.default_root_dir={run_dir}",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_progress_bar=false", "--checkpoint.monitor=null", "--checkpoint.save_top_k=0",
        "--checkpoint.save_last=true",
    ]  # fmt: skip
    if epochs is None:
        assert budget is not None
        overrides += ["--trainer.max_epochs=-1", f"--trainer.max_time={max_time_arg(budget - STARTUP_S)}"]
    else:
        overrides.append(f"--trainer.max_epochs={epochs}")
    model = parse_config(config_args(configs)).model
    scheduler = model.get("lr_scheduler")
    if epochs is None or model.get("schedule") is not None:
        pass  # the schedule follows the run's own end
    elif scheduler is not None and "T_max" in (scheduler.get("init_args") or {}):
        t_max = epochs if model.get("lr_scheduler_interval", "epoch") == "epoch" else epochs * steps_per_epoch
        overrides.append(f"--model.lr_scheduler.init_args.T_max={t_max}")
    elif scheduler is not None:
        print(f"  note: {name}'s scheduler {scheduler.get('class_path')} is not fitted to {epochs} epochs", flush=True)
    wall = run_logged([sys.executable, "-m", "detkit", "fit", *config_args(configs), *overrides], run_dir / "fit.log")
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    eval_dir = run_dir / "evaluate"
    run_logged([sys.executable, "-m", "detkit", "evaluate", "--ckpt_path", str(ckpt), *config_args(configs),
          "--out", str(eval_dir)], run_dir / "evaluate.log")  # fmt: skip
    stats = stats_from(run_dir / "evaluate.log")
    steps_run = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]  # fewer if max_time stopped it
    if read_json(eval_dir / "ground_truth.json") != read_json(gt_path):
        raise RuntimeError(f"{name}: detkit evaluate scored other ground truth than {gt_path}")
    predictor = load_detector(ckpt)
    padded, _ = predictor.letterbox(to_hwc_array(image))
    x = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None]  # (1, 3, S, S)
    run = lambda: predictor.detector.predict_batch(x)  # noqa: E731
    with torch.inference_mode():
        latency = cpu_latency_ms(run, args.latency_threads)
    return {
        "map": stats["map"], "map_50": stats["map_50"], "wall_s": wall, "epochs": round(steps_run / steps_per_epoch, 1),
        "budget_used": wall / budget if budget else None,
        "latency_ms": latency, "gflops": gflops(run), "input": f"{x.shape[-1]}x{x.shape[-2]}",
        "params_m": sum(p.numel() for p in predictor.detector.parameters()) / 1e6,
    }  # fmt: skip

# ---- the table -----------------------------------------------------------------------------------
def summarise(name: str, kind: str, configs: list[str], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row: medians (and ranges) over seeds; speed from the first run."""
    row: dict[str, Any] = {"model": name, "kind": kind, "configs": configs, "seeds": [r["seed"] for r in runs], "runs": runs}
    for key in ("map", "map_50", "wall_s", "epochs"):
        values = [r[key] for r in runs]
        row[key] = statistics.median(values)
        row[f"{key}_range"] = [min(values), max(values)]
    for key in ("latency_ms", "gflops", "input", "params_m"):
        row[key] = runs[0][key]
    return row


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    value = format(row[key], fmt)
    low, high = row[f"{key}_range"]
    return value if len(row["runs"]) == 1 else f"{value} ({format(low, fmt)}-{format(high, fmt)})"


def format_table(rows: list[dict[str, Any]], header: str, markdown: bool = False) -> str:
    columns = ["model", "mAP", "mAP50", "wall s", "epochs", "latency ms (bs 1)", "GFLOPs", "input", "params M", "seeds"]
    cells = [
        [row["model"], _cell(row, "map", ".3f"), _cell(row, "map_50", ".3f"), _cell(row, "wall_s", ".0f"),
         _cell(row, "epochs", "g"), f"{row['latency_ms']:.1f}", f"{row['gflops']:.2f}", row["input"],
         f"{row['params_m']:.2f}", " ".join(map(str, row["seeds"]))]
        for row in rows
    ]  # fmt: skip
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" + "---:|" * (len(columns) - 1)]
        lines += ["| " + " | ".join(c) + " |" for c in cells]
        return header + "\n\n" + "\n".join(lines) + "\n"
    widths = [max(len(str(x)) for x in col) for col in zip(columns, *cells)]

    def line(values: list[str]) -> str:  # first column left-aligned, the others right-aligned
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    rule = "-" * (sum(widths) + 2 * len(widths) - 2)
    return "\n".join([header, "", line(columns), rule, *map(line, cells)])


def _brief(run: dict[str, Any]) -> str:
    used = f" ({run['budget_used']:.0%} of the budget)" if run.get("budget_used") else ""
    return f"mAP {run['map']:.3f}  mAP50 {run['map_50']:.3f}  {run['wall_s']:.0f} s{used}  {run['epochs']:g} epochs"


def _parse_rows(specs: list[str] | None) -> dict[str, list[str]]:
    if not specs:
        return dict(DEFAULT_ROWS)
    rows = {}
    for spec in specs:
        name, sep, configs = spec.partition("=")
        if not sep or not name or not configs:
            raise SystemExit(f"--detkit takes NAME=CONFIG[,CONFIG...], got {spec!r}")
        rows[name] = configs.split(",")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = "; ".join(f"{name}={','.join(configs)}" for name, configs in DEFAULT_ROWS.items())
    parser.add_argument("--detkit", action="append", metavar="NAME=CONFIG[,CONFIG...]",
                        help=f"a detkit row (repeatable); default: {defaults}")  # fmt: skip
    parser.add_argument("--peers", nargs="*", default=["torchvision_fcos_resnet50_fpn", YOLO],
                        help=f"peer rows: {YOLO} and/or torchvision_fcos_resnet{{18,50}}_fpn (none: --peers)")  # fmt: skip
    parser.add_argument("--data-config", action="append", help="config(s) whose data: block every row uses "
                        "(default: configs/raccoon.yaml); detkit rows must read the same splits")  # fmt: skip
    parser.add_argument("--size", type=int, default=416, help="input size of every row (--data.input_size, imgsz)")
    parser.add_argument("--batch", type=int, default=16, help="batch size of every row")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the detkit rows (peers: the first)")
    parser.add_argument("--row-seeds", action="append", default=[], metavar="NAME=SEED[,SEED...]",
                        help="seeds of one detkit row instead of --seeds (repeatable)")  # fmt: skip
    parser.add_argument("--budget", default="auto", help="seconds per training, or 'auto': YOLO11n's --yolo-epochs wall time")
    parser.add_argument("--epochs", type=int, help="train detkit and torchvision rows this many epochs instead of to the budget")
    parser.add_argument("--yolo-epochs", type=int, default=30)
    parser.add_argument("--yolo-python", default=sys.executable, help="python of an environment with ultralytics (the bench extra)")
    parser.add_argument("--latency-threads", type=int, default=0,
                        help="CPU threads of the latency measurements (default 0: torch's default, all cores)")  # fmt: skip
    parser.add_argument("--tv-lr", type=float, default=1e-3, help="AdamW learning rate of the torchvision loop")
    parser.add_argument("--out", type=Path, default=Path("runs/accuracy"), help="folder of every run's files")
    parser.add_argument("--resume", action="store_true", help="reuse the results of trainings already finished under --out")
    parser.add_argument("--json", type=Path, help="write {'rows': [...], 'cpu': ..., ...} here")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown here")
    args = parser.parse_args()
    args.data_config = args.data_config or ["configs/raccoon.yaml"]
    detkit_rows = _parse_rows(args.detkit)
    peers = list(args.peers)
    for peer in peers:
        if peer != YOLO and not peer.startswith("torchvision_fcos_"):
            raise SystemExit(f"unknown peer {peer!r}")
    if args.budget == "auto" and YOLO not in peers and args.epochs is None:
        raise SystemExit("--budget auto is YOLO11n's training time: add yolo11n to --peers or give --budget SECONDS")
    budget = None if args.budget == "auto" else float(args.budget)
    args.out.mkdir(parents=True, exist_ok=True)

    cpu = cpu_description()
    reference = parse_config(data_args(args)).data
    for name, configs in detkit_rows.items():
        check_same_data(name, configs, reference)
    datamodule = build_data(data_args(args))
    datamodule.setup("test")
    n_train, n_test = len(datamodule.reader("train")), len(datamodule.reader("test"))
    gt_path = args.out / "ground_truth.json"
    write_ground_truth(datamodule, gt_path)
    image = first_test_image(datamodule)
    row_seeds = {name: list(args.seeds) for name in detkit_rows}
    for spec in args.row_seeds:
        name, _, seeds = spec.partition("=")
        if name not in detkit_rows or not seeds:
            raise SystemExit(f"--row-seeds takes NAME=SEED[,SEED...] for a --detkit row, got {spec!r}")
        row_seeds[name] = [int(seed) for seed in seeds.split(",")]
    trainings = sum(len(seeds) for seeds in row_seeds.values()) + len(peers)
    each = "the budget" if budget is None else f"{budget:.0f} s"
    print(f"{n_train} train / {n_test} test images at {args.size} px, batch {args.batch}; {trainings} trainings "
          f"of {each} each; results under {args.out}", flush=True)  # fmt: skip

    def cached(run_dir: Path, train: Callable[[], dict[str, Any]], seed: int) -> dict[str, Any]:
        result_file = run_dir / "result.json"
        if args.resume and result_file.is_file():
            return json.loads(result_file.read_text())
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        result = {**train(), "seed": seed}
        result_file.write_text(json.dumps(result, indent=2))
        return result

    rows = []
    seed0 = args.seeds[0]
    if YOLO in peers:  # first: its wall time is the budget of 'auto'
        print(f"== {YOLO} (Ultralytics, {args.yolo_epochs} epochs, seed {seed0})", flush=True)
        run_dir = args.out / YOLO / f"seed{seed0}"
        run = cached(run_dir, lambda: train_yolo(seed0, args, run_dir, gt_path, datamodule), seed0)
        rows.append(summarise(YOLO, "peer", [], [run]))
        print(f"   {_brief(run)}", flush=True)
        if budget is None:
            budget = run["wall_s"]
    if args.epochs is None:
        print(f"budget: {budget:.0f} s per training", flush=True)
    for name, configs in detkit_rows.items():
        runs = []
        steps = math.ceil(len(datamodule.reader("train")) / args.batch)
        if args.epochs is None:
            check_budget_true(name, configs)
            print(f"== {name}: {budget:.0f} s (trainer.max_time {budget - STARTUP_S:.0f} s), {steps} steps/epoch", flush=True)
        else:
            print(f"== {name}: {args.epochs} epochs", flush=True)
        for seed in row_seeds[name]:
            run_dir = args.out / name / f"seed{seed}"
            train = lambda: train_detkit(name, configs, seed, args.epochs, steps,  # noqa: E731
                                         None if args.epochs else budget, args, run_dir, gt_path, image)  # fmt: skip
            runs.append(cached(run_dir, train, seed))
            print(f"   seed {seed}: {_brief(runs[-1])}", flush=True)
        rows.append(summarise(name, "detkit", configs, runs))
    for peer in peers:
        if peer == YOLO:
            continue
        print(f"== {peer} (torchvision, plain loop, seed {seed0})", flush=True)
        run_dir = args.out / peer / f"seed{seed0}"
        peer_budget = None if args.epochs else budget
        run = cached(run_dir, lambda: train_torchvision(peer, seed0, peer_budget, args, run_dir, gt_path), seed0)
        print(f"   {_brief(run)}", flush=True)
        rows.append(summarise(peer, "peer", [], [run]))

    split = f"{n_train} train / {n_test} test images"
    budget_text = f"{args.epochs} epochs per detkit/torchvision row" if args.epochs else f"budget {budget:.0f} s per training"
    header = (
        f"{', '.join(args.data_config)} ({split}) at {args.size} px, batch {args.batch}, {budget_text} "
        f"({YOLO}: {args.yolo_epochs} epochs); COCO mAP by detkit evaluate on the test images; detkit rows: median "
        f"(min-max) over seeds {' '.join(map(str, args.seeds))} (unless the seeds column says otherwise)\n"
        f"CPU: {cpu['model']}, {cpu['cores']} cores, torch {cpu['torch']}; latency on "
        f"{args.latency_threads or cpu['torch_threads']} threads\n"
        f"CPU flags: {cpu['flags']}"
    )  # fmt: skip
    print("\n" + format_table(rows, header))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(format_table(rows, header.replace("\n", "  \n"), markdown=True))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "cpu": cpu, "budget_s": budget, "size": args.size,
                                         "batch": args.batch, "data_config": args.data_config}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
