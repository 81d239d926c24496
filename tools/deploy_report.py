"""Deployment table: one row per variant (PyTorch, TorchScript, ONNX fp32/int8, pruned + fine-tuned) with mAP, latency, size, FLOPs.

    python -m tools.deploy_report measure --name shapes --config configs/shapes.yaml \\
        --ckpt runs/deploy/shapes/checkpoints/best.ckpt --out runs/deploy/shapes_report
    python -m tools.deploy_report render runs/deploy/*_report/report.json \\
        --markdown docs/deployment.md --pareto docs/deploy_pareto.png

``measure`` exports the checkpoint (ONNX with a dynamic batch, TorchScript, int8 calibrated on the
training split), prunes it at each ``--ratios`` with ``detkit prune``, fine-tunes each pruned model
with ``detkit fit`` for ``--finetune-epochs`` and exports those too (and, as a control, the unpruned
model fine-tuned alike); every variant is scored on the
test split exactly as ``detkit test`` scores (same loader, letterbox and evaluator); then each is
timed in a process of its own, in ``--rounds`` rounds (see ``isolated_speed``), on one letterboxed test image (network,
decoding and NMS; reading and letterboxing not included).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import torch

from detkit.training.cli import build_data
from detkit.deploy import export_model
from detkit.deploy.prune import prune_checkpoint, write_fine_tune_config
from detkit.deploy.quantize import calibration_sample, quantize_int8
from detkit.inference import load_detector
from detkit.ops.letterbox import Letterbox
from tools.accuracy_measure import cpu_description, run_logged
from tools.deploy_measure import detector_gflops, file_mb, isolated_speed, paired_latency, state_dict_mb, test_map


VARIANTS: dict[str, tuple[str, str]] = {}  # variant -> (kind, file) for isolated_speed, all timed at the end


def _row(name: str, kind: str, path: Path, configs: list[str], size_mb: float, gflops: float) -> dict[str, Any]:
    VARIANTS[name] = (kind, str(path))
    row = {"variant": name, **test_map(path, configs), "size_mb": size_mb, "gflops": gflops}
    print(json.dumps(row), flush=True)
    return row


def _exported_rows(prefix: str, ckpt: Path, out: Path, args: argparse.Namespace, calibration: list, torchscript: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    model = load_detector(ckpt)
    side = model.letterbox.padded_size
    gflops = detector_gflops(model, side)
    rows = []
    if torchscript:
        rows.append(_row(f"{prefix}PyTorch fp32", "pytorch", ckpt, args.config, state_dict_mb(model), gflops))
        path = export_model(model, out / "model.torchscript", "torchscript")
        rows.append(_row(f"{prefix}TorchScript fp32", "torchscript", path, args.config, file_mb(path), gflops))
    onnx = export_model(model, out / "model.onnx", "onnx", dynamic_batch=True)
    rows.append(_row(f"{prefix}ONNX fp32", "onnx", onnx, args.config, file_mb(onnx), gflops))
    int8 = quantize_int8(onnx, out / "model.int8.onnx", calibration)
    rows.append(_row(f"{prefix}ONNX int8", "onnx", int8, args.config, file_mb(int8), gflops))
    return rows


def _fine_tune(args: argparse.Namespace, config: list[str], run_dir: Path) -> tuple[Path, float]:
    """``detkit fit`` with the report's fine-tuning settings (kept under ``--reuse``): last checkpoint, wall seconds."""
    tuned, wall_file, stamp_file = run_dir / "checkpoints" / "last.ckpt", run_dir.with_suffix(".wall"), run_dir.with_suffix(".json")
    stamp = json.dumps({"config": config, "epochs": args.finetune_epochs, "lr": args.finetune_lr, "args": args.finetune_arg})
    reusable = tuned.exists() and wall_file.exists() and stamp_file.exists() and stamp_file.read_text() == stamp
    if not (args.reuse and reusable):
        wall = run_logged([sys.executable, "-m", "detkit", "fit", *config, f"--trainer.max_epochs={args.finetune_epochs}",
                           f"--trainer.default_root_dir={run_dir}", f"--model.optimizer.init_args.lr={args.finetune_lr}",
                           *args.finetune_arg], run_dir.with_suffix(".log"))  # fmt: skip
        wall_file.write_text(str(wall))
        stamp_file.write_text(stamp)
    return tuned, float(wall_file.read_text())


def _yolo_row(args: argparse.Namespace, out: Path, side: int) -> dict[str, Any] | None:
    """Ultralytics' own ONNX export (with its NMS) of the YOLO11n that tools/accuracy.py trained, timed here."""
    if not (args.yolo_python and args.yolo_weights and Path(args.yolo_python).exists()):
        return None
    code = (f"from ultralytics import YOLO; print(YOLO({args.yolo_weights!r}).export(format='onnx', imgsz={side}, "
            "nms=True, dynamic=True, batch=8))")  # fmt: skip
    log = out / "yolo_export.log"
    run_logged([args.yolo_python, "-c", code], log, env={"YOLO_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    path = Path(log.read_text().strip().splitlines()[-1].strip())
    result = json.loads(Path(args.yolo_result).read_text()) if args.yolo_result else {}
    variant = "Ultralytics YOLO11n ONNX (own exporter, NMS inside)"
    VARIANTS[variant] = ("onnx-raw", str(path))
    row = {"variant": variant, "map": result.get("map"), "map_50": result.get("map_50"), "size_mb": file_mb(path),
           "gflops": None, "note": "mAP of its PyTorch weights (tools/accuracy.py), timed as ONNX"}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def measure(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = [f"--config={path}" for path in args.config]
    datamodule = build_data(config, ckpt_path=args.ckpt)
    datamodule.setup("test")
    letterbox = load_detector(args.ckpt).letterbox
    side = letterbox.padded_size
    padded, _ = letterbox(datamodule.reader("test")[0][0])
    image = torch.from_numpy(padded).permute(2, 0, 1).float() / 255.0
    calibration = calibration_sample(datamodule.reader("train"), args.calib_count)
    rows = _exported_rows("", Path(args.ckpt), out / "fp32", args, calibration, torchscript=True)
    if args.control:  # the unpruned model trained as long again: what pruning costs at equal training
        tuned, wall = _fine_tune(args, config + [f"--model.init_weights={args.ckpt}"], out / "unpruned" / "finetune")
        prefix = f"unpruned + fine-tune {args.finetune_epochs} ep ({wall:.0f} s), "
        rows += _exported_rows(prefix, tuned, out / "unpruned" / "export", args, calibration)
    for ratio in args.ratios:
        pruned = out / f"pruned_{ratio:g}" / "pruned.ckpt"
        if not (args.reuse and pruned.exists()):
            write_fine_tune_config(*prune_checkpoint(args.ckpt, pruned, ratio))
        model = load_detector(pruned)
        onnx = export_model(model, out / f"pruned_{ratio:g}" / "model.onnx", "onnx", dynamic_batch=True)
        rows.append(_row(f"pruned {ratio:.0%}, no fine-tune, ONNX fp32", "onnx", onnx, args.config, file_mb(onnx),
                         detector_gflops(model, side)))  # fmt: skip
        tuned, wall = _fine_tune(args, config + [f"--config={pruned.with_suffix('.yaml')}"], out / f"pruned_{ratio:g}" / "finetune")
        prefix = f"pruned {ratio:.0%} + fine-tune {args.finetune_epochs} ep ({wall:.0f} s), "
        rows += _exported_rows(prefix, tuned, out / f"pruned_{ratio:g}" / "export", args, calibration)
    try:
        yolo = _yolo_row(args, out, side)
    except (RuntimeError, OSError, IndexError) as error:  # the peer is optional: say why it is missing
        print(f"no YOLO11n row: {error}", file=sys.stderr)
        yolo = None
    rows += [yolo] if yolo else []
    timings = isolated_speed(VARIANTS, image, args.threads, args.runs, out, args.rounds)
    rows = [{**row, **timings[row["variant"]]} for row in rows]
    report = {"name": args.name, "ckpt": str(args.ckpt), "config": args.config, "side": side, "threads": args.threads,
              "rounds": args.rounds, "finetune": {"epochs": args.finetune_epochs, "lr": args.finetune_lr,
              "args": args.finetune_arg}, "cpu": cpu_description(), "rows": rows}  # fmt: skip
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(render_table(report))


def norm_effect(args: argparse.Namespace) -> None:
    """int8 vs fp32 ONNX latency of the same detector with a GroupNorm head and with a BatchNorm head
    (the config's architecture, untrained: latency only), and the int8 graph's op counts."""
    import onnx

    from detkit.training.cli import parse_config
    from detkit.inference import Predictor, instantiate_detector

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    config_args = [f"--config={path}" for path in args.config]
    parsed = parse_config(config_args)
    datamodule = build_data(config_args)
    datamodule.setup("fit")
    train = datamodule.reader("train")
    calibration = [train[i][0] for i in range(min(len(train), 32))]
    size, pad = parsed.data.input_size, parsed.data.pad_multiple
    detector_config = json.loads(json.dumps(parsed.model.detector.as_dict(), default=str))
    sessions, ops = {}, {}
    for norm in ("group", "batch"):
        config = json.loads(json.dumps(detector_config))
        config["init_args"]["head"]["init_args"]["norm"] = norm
        config["init_args"]["backbone"]["init_args"].pop("weights", None)
        detector = instantiate_detector(config, len(train.class_names), pretrained_backbone=False).eval()
        model = Predictor(detector, train.class_names, size, pad)
        fp32 = export_model(model, out / f"{norm}_head" / "model.onnx", dynamic_batch=True)
        int8 = quantize_int8(fp32, out / f"{norm}_head" / "model.int8.onnx", calibration)
        for kind, path in (("fp32", fp32), ("int8", int8)):
            sessions[f"{norm} head, {kind}"] = ("onnx", str(path))
        counts: dict[str, int] = {}
        for node in onnx.load(str(int8)).graph.node:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        ops[norm] = {k: counts.get(k, 0) for k in ("Conv", "QuantizeLinear", "DequantizeLinear", "InstanceNormalization", "BatchNormalization")}
    padded, _ = Letterbox(size, pad_multiple=pad)(datamodule.reader("val")[0][0])
    image = torch.from_numpy(padded).permute(2, 0, 1).float() / 255.0
    timings = isolated_speed(sessions, image, args.threads, args.runs, out)
    result = {"cpu": cpu_description(), "threads": args.threads, "timings": timings, "int8_ops": ops}
    (out / "norm_effect.json").write_text(json.dumps(result, indent=2))
    for norm in ("group", "batch"):
        fp32, int8 = timings[f"{norm} head, fp32"], timings[f"{norm} head, int8"]
        print(f"{norm:5s} head: fp32 {fp32['latency_ms']:.1f} ms, int8 {int8['latency_ms']:.1f} ms "
              f"({fp32['latency_ms'] / int8['latency_ms']:.2f}x); bs8 {fp32['throughput']:.1f} -> {int8['throughput']:.1f} img/s; "
              f"int8 graph ops {ops[norm]}")  # fmt: skip


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    base = next(r for r in report["rows"] if r["variant"] == "ONNX fp32")
    lines = [f"**{report['name']}** ({report['side']} px letterbox, test split; {report['threads']} threads)", "",
             "| variant | mAP | mAP50 | latency bs1 ms | vs ONNX fp32 | throughput bs8 img/s | size MB | GFLOPs |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in report["rows"]:
        ratio = base["latency_ms"] / r["latency_ms"]
        lines.append(f"| {r['variant']} | {_fmt(r['map'], '.3f')} | {_fmt(r['map_50'], '.3f')} | {r['latency_ms']:.1f} | "
                     f"{ratio:.2f}x | {r['throughput']:.1f} | {r['size_mb']:.2f} | {_fmt(r['gflops'], '.2f')} |")  # fmt: skip
    notes = [r["note"] for r in report["rows"] if r.get("note")]
    return "\n".join(lines + ([""] + [f"{r['variant']}: {r['note']}." for r in report["rows"] if r.get("note")] if notes else []))


def render(args: argparse.Namespace) -> None:
    reports = [json.loads(Path(p).read_text()) for p in args.reports]
    cpu = reports[0]["cpu"]
    flags = " ".join(f for f in cpu["flags"].split() if f.startswith(("avx", "amx")))
    text = [f"CPU: {cpu['model']} ({cpu['cores']} cores; {flags}); torch {cpu['torch']}.", ""]
    text += [render_table(report) + "\n" for report in reports]
    print("\n".join(text))
    if args.markdown:
        marker = "<!-- deploy table -->"
        doc = Path(args.markdown)
        head = doc.read_text().split(marker)[0] if doc.exists() else ""
        doc.write_text(head + marker + "\n\n" + "\n".join(text))
    if args.pareto:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        fig, axes = plt.subplots(1, len(reports), figsize=(6.5 * len(reports), 4.8), squeeze=False)
        for ax, report in zip(axes[0], reports):
            markers = "osD^v<>Pp*hX"
            shown = (r for r in report["rows"] if r["map"] is not None and "no fine-tune" not in r["variant"])  # those: mAP ~0, in the table
            for i, row in enumerate(shown):
                label = re.sub(r" \(\d+ s\)", "", row["variant"]).replace("fine-tune", "ft").replace(" (own exporter, NMS inside)", "")
                ax.scatter(row["latency_ms"], row["map"], s=45, marker=markers[i % len(markers)], label=label)
            ax.set_xlabel(f"latency, batch 1, ms ({report['threads']} threads)")
            ax.set_ylabel("COCO mAP (test split)")
            ax.set_title(f"{report['name']} ({report['side']} px)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(args.pareto, dpi=110)


def compare(args: argparse.Namespace) -> None:
    rows = paired_latency([Path(p) for p in args.models], Path(args.image), args.threads, args.runs, args.rounds)
    cpu = cpu_description()
    print(f"CPU: {cpu['model']} ({cpu['cores']} cores); onnxruntime {args.threads} threads; {args.rounds} rounds of {args.runs} calls")
    print(f"| model | latency bs1 ms (median of rounds) | speed-up vs {args.models[0]} (median, min-max over rounds) |")
    print("|---|---:|---:|")
    for row in rows:
        print(f"| {row['path']} | {row['latency_ms']:.2f} | {row['speedup']:.2f}x ({row['speedup_min']:.2f}-{row['speedup_max']:.2f}) |")


def _positive(text: str) -> int:
    if int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--name", required=True)
    m.add_argument("--config", nargs="+", required=True, help="the run's config files (data + model)")
    m.add_argument("--ckpt", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--ratios", type=float, nargs="*", default=[0.3, 0.5])
    m.add_argument("--finetune-epochs", type=int, default=5)
    m.add_argument("--finetune-lr", type=float, default=0.001)
    m.add_argument("--finetune-arg", action="append", default=[],
                   help="one more detkit fit argument for the fine-tune, e.g. --finetune-arg=--model.lr_scheduler.init_args.T_max=10")
    m.add_argument("--no-control", dest="control", action="store_false",
                   help="skip fine-tuning the unpruned model as long as the pruned ones (the equal-training control rows)")
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--rounds", type=_positive, default=3, help="timing rounds per variant, the fastest kept")
    m.add_argument("--runs", type=int, default=100, help="timed batch-1 calls per variant")
    m.add_argument("--reuse", action="store_true", help="keep pruned checkpoints and fine-tunings already under --out (fine-tunings only when made with the same settings)")
    m.add_argument("--calib-count", type=int, default=100)
    m.add_argument("--yolo-python", help="python of a venv with ultralytics (../shared/PEERS.md)")
    m.add_argument("--yolo-weights", help="YOLO11n weights trained by tools/accuracy.py")
    m.add_argument("--yolo-result", help="its result.json (mAP of the PyTorch weights)")
    n = sub.add_parser("norm-effect", help="int8 speed-up with a GroupNorm vs a BatchNorm head (untrained, latency only)")
    n.add_argument("--config", nargs="+", required=True)
    n.add_argument("--out", required=True)
    n.add_argument("--threads", type=int, default=2)
    n.add_argument("--runs", type=int, default=100)
    c = sub.add_parser("compare", help="paired batch-1 latency of detkit ONNX exports: ratios to the first, round by round")
    c.add_argument("models", nargs="+")
    c.add_argument("--image", required=True, help="a letterboxed test image, float [3, S, S] .npy (measure writes timing_image.npy)")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--runs", type=int, default=300)
    c.add_argument("--rounds", type=_positive, default=10)
    r = sub.add_parser("render")
    r.add_argument("reports", nargs="+")
    r.add_argument("--markdown")
    r.add_argument("--pareto")
    args = parser.parse_args()
    {"measure": measure, "norm-effect": norm_effect, "compare": compare, "render": render}[args.command](args)


if __name__ == "__main__":
    main()
