"""``detkit report RUN_DIR``: one HTML page of a run or an evaluation: stats, curves, confusion, TIDE errors, failure galleries."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

USAGE = """\
detkit report RUN_DIR [--config CONFIG.yaml ...] [--ckpt_path CKPT] [--data.X V ...] [--out DIR] [options]"""

_DESCRIPTION = """\
Write RUN_DIR/report/report.html (or --out DIR/report.html): a page any browser opens offline (inline
CSS, figures in figures/ beside it, or inside it with --embed) with the run summary (config, data
counts, wall time, this machine's CPU/GPU, library versions), training curves, the 12 COCO stats, a
sortable per-class table, precision-recall curves, a confusion matrix, the TIDE error decomposition,
failure galleries (per error type, the images where it costs most, ground truth beside detections;
Grad-CAM of the top false positives), missed-vs-found box histograms and the exported models."""

_EPILOG = """\
What RUN_DIR must hold:
  1. a `detkit evaluate --out` folder: ground_truth.json and detections.json. Galleries are drawn on the
     images of --images DIR (the json's file_names) or of --config's test split, else on grey.
  2. a training run (the trainer.default_root_dir of `detkit fit`), used when RUN_DIR has no such jsons
     or --ckpt_path is given: a checkpoint (checkpoints/best.ckpt, else last.ckpt, or --ckpt_path) and the
     data's config (the csv/version_N/config.yaml that fit saved, or --config). The checkpoint is run on
     the config's test split exactly as `detkit evaluate --ckpt_path` does (--data.* overrides apply);
     ground_truth.json and detections.json are written beside the report, Grad-CAM maps come from it.
  3. only a training log (csv/version_N/metrics.csv): a report of the run and its curves, saying why
     there are no test results.
Exit status: 0 written, 2 nothing to report or bad input (the message says which)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detkit report", usage=USAGE, description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)  # fmt: skip
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="a run's default_root_dir or a `detkit evaluate --out` folder")
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="YAML whose data: block describes the data (repeatable; default: the run's saved config)")  # fmt: skip
    parser.add_argument("--ckpt_path", type=Path, help="the checkpoint to evaluate (default: RUN_DIR/checkpoints/best.ckpt)")
    parser.add_argument("--images", type=Path, help="image folder of ground_truth.json's file_names (case 1)")
    parser.add_argument("--out", type=Path, help="the report folder (default: RUN_DIR/report)")
    parser.add_argument("--score_threshold", type=float, default=0.25, help="confusion matrix and galleries: lowest score (0.25)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU of a match for the confusion matrix and TIDE (0.5)")
    parser.add_argument("--top", type=int, default=6, help="gallery images per error type (6)")
    parser.add_argument("--gradcam_top", type=int, default=4, help="false positives shown with Grad-CAM (4; 0: none)")
    parser.add_argument("--measure_exports", action="store_true",
                        help="also score each export/*.onnx / *.torchscript on the test split (mAP, time per image)")  # fmt: skip
    parser.add_argument("--embed", action="store_true", help="images inside report.html (base64): one file to pass around")
    parser.add_argument("--device", default="cpu", help="device the model runs on (case 2)")
    return parser


_SUBCOMMAND_KEYS = ("ckpt_path", "weights_only", "verbose", "return_predictions")


def _plain_configs(configs: list[Path], folder: Path) -> list[Path]:
    """The configs, those that `detkit fit|test` saved (with subcommand keys such as ``ckpt_path``,
    which a plain parse refuses) copied into ``folder`` without those keys."""
    import yaml

    out = []
    for k, path in enumerate(configs):
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and any(key in data for key in _SUBCOMMAND_KEYS):
            path = folder / f"config_{k}.yaml"
            path.write_text(yaml.safe_dump({key: v for key, v in data.items() if key not in _SUBCOMMAND_KEYS}))
        out.append(path)
    return out


def _measure(predictor: Any, model_path: Path, config_args: list[str]) -> tuple[Any, Any, dict, Any, float]:
    from detkit.commands.evaluate import data_letterboxed_as, run_on_test_split

    datamodule = data_letterboxed_as(predictor, model_path, config_args)
    start = time.perf_counter()
    gt, dt, images = run_on_test_split(predictor, datamodule, str(model_path))
    return gt, dt, images, datamodule, time.perf_counter() - start


_TIME = "ms / image (test pass, with loading)"


def _export_table(run: Any, config_args: list[str], predictor: Any, ckpt: Path) -> list[dict[str, Any]]:
    """The checkpoint (again, warm) and the run's exports scored on the test split: mAP, AP50, time per image."""
    from detkit.evaluation.cocoeval import evaluate_coco
    from detkit.evaluation.run_folder import export_rows
    from detkit.inference import load_detector

    rows = []
    models = [({"file": str(ckpt), "format": "checkpoint (PyTorch)"}, ckpt, lambda: predictor)]
    models += [(row, path, lambda path=path: load_detector(path)) for row, path in zip(export_rows(run), run.exports)]
    for row, path, load in models:
        try:
            gt, dt, images, _, seconds = _measure(load(), path, config_args)
            stats = evaluate_coco(gt, dt).stats
            row.update({"mAP": stats["map"], "AP50": stats["map_50"], _TIME: 1000 * seconds / max(len(images), 1)})
        except Exception as error:  # noqa: BLE001 - one unreadable export (no onnxruntime, corrupt file) must not end the report
            row["mAP"] = f"not measured: {type(error).__name__}: {str(error)[:200]}"
        rows.append(row)
    return rows


def _from_checkpoint(args: argparse.Namespace, run: Any, rest: list[str], out: Path, scratch: Path) -> dict[str, Any]:
    from detkit.commands.evaluate import coco_with_images
    from detkit.data.readers.base import pixels_by_image_id
    from detkit.evaluation.cocojson import results_to_coco, write_json
    from detkit.inference import load_detector

    ckpt = args.ckpt_path or run.checkpoint
    configs = args.config or ([run.config] if run.config is not None else [])
    if not configs:
        raise ValueError(f"{args.run} has the checkpoint {ckpt} but no saved config (csv/version_N/config.yaml): "
                         "give the data's --config")  # fmt: skip
    config_args = [f"--config={p}" for p in _plain_configs(configs, scratch)] + rest
    predictor = load_detector(ckpt, device=args.device)
    gt, dt, images, datamodule, _ = _measure(predictor, ckpt, config_args)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "detections.json", results_to_coco(dt, gt))
    write_json(out / "ground_truth.json", coco_with_images(gt, images))
    reader = datamodule.reader("test")
    table = _export_table(run, config_args, predictor, ckpt) if args.measure_exports and run.exports else None
    return {"gt": gt, "dt": dt, "images": pixels_by_image_id(reader), "model": predictor if args.gradcam_top > 0 else None,
            "image_sizes": {i: (v["height"], v["width"]) for i, v in images.items()}, "export_table": table,
            "source": {"checkpoint": ckpt, "config": ", ".join(map(str, configs)), "test data": repr(reader)}}  # fmt: skip


def _from_evaluation(args: argparse.Namespace, run: Any, rest: list[str], scratch: Path) -> dict[str, Any]:
    from detkit.commands.evaluate import folder_images, image_sizes
    from detkit.data.readers.base import pixels_by_image_id
    from detkit.evaluation.cocojson import load_ground_truth, load_results, read_json

    gt_path, dt_path = run.evaluation
    gt_json = read_json(gt_path)
    gt = load_ground_truth(gt_json, source=str(gt_path))
    found: dict[str, Any] = {"gt": gt, "dt": load_results(dt_path, gt), "image_sizes": image_sizes(gt_json),
                             "source": {"ground truth": gt_path, "detections": dt_path}}  # fmt: skip
    if args.images is not None:
        found["images"] = folder_images(args.images, gt_json)
    elif args.config:
        from detkit.training.cli import build_data

        reader = build_data([f"--config={p}" for p in _plain_configs(args.config, scratch)] + rest).reader("test")
        found["images"] = pixels_by_image_id(reader)
    return found


def main(argv: list[str]) -> int:
    """Entry point of ``detkit report`` (``argv`` without the subcommand); returns the exit status."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if a.startswith("-") and not a.startswith("--data")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from detkit.evaluation.run_folder import inspect_run

    if not args.run.is_dir():
        print(f"detkit report: error: no folder {args.run}", file=sys.stderr)
        return 2
    run = inspect_run(args.run)
    out = args.out or args.run / "report"
    try:
        with tempfile.TemporaryDirectory() as scratch:
            if args.ckpt_path is not None or (run.evaluation is None and run.checkpoint is not None):
                found = _from_checkpoint(args, run, rest, out, Path(scratch))
            elif run.evaluation is not None:
                found = _from_evaluation(args, run, rest, Path(scratch))
            elif run.metrics is not None:
                from detkit.pictures.report_page import write_run_report

                reason = (f"{args.run} has a training log but no checkpoint (checkpoints/*.ckpt) and no "
                          "ground_truth.json + detections.json, so nothing was evaluated")  # fmt: skip
                print(f"detkit report: {reason}; writing the run's summary and curves only", file=sys.stderr)
                print(write_run_report(out, run, reason, embed=args.embed))
                return 0
            else:
                print(f"detkit report: error: nothing to report in {args.run}: it has no checkpoints/*.ckpt, no "
                      "ground_truth.json + detections.json (detkit evaluate --out) and no csv/version_N/metrics.csv "
                      "(see detkit report --help)", file=sys.stderr)  # fmt: skip
                return 2
            from detkit.pictures.report_page import write_html_report

            gt, dt = found.pop("gt"), found.pop("dt")
            page = write_html_report(out, gt, dt, run=run, score_threshold=args.score_threshold, iou_threshold=args.iou,
                                     top=args.top, gradcam_top=args.gradcam_top, embed=args.embed, **found)  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        print(f"detkit report: error: {error}", file=sys.stderr)
        return 2
    print(page)
    return 0
