"""``detkit evaluate``: COCO stats and reports for a results json, or for a checkpoint on the test split."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from detkit.evaluation.cocoeval import evaluate_coco
from detkit.evaluation.cocojson import (
    GroundTruth,
    Results,
    ground_truth_to_coco,
    load_ground_truth,
    load_results,
    results_to_coco,
    write_json,
)

if TYPE_CHECKING:
    from detkit.data import DetectionDataModule
    from detkit.predictors import BasePredictor

USAGE = """\
detkit evaluate --gt GT.json --dt DETECTIONS.json [--out DIR] [--voc]
detkit evaluate --ckpt_path best.ckpt --config CONFIG.yaml [--data.X V ...] [--out DIR] [--voc]"""

_EPILOG = """\
Prints the 12 COCO stats (map, map_50, ..., mar_large) as one json object on stdout. With --out
it also writes metrics.json, per_class.csv (also printed, on stderr), pr_curves.csv,
pr_overall.png, pr_per_class.png, confusion_matrix.csv/.png and, for a checkpoint,
detections.json (COCO results) and ground_truth.json (what was scored: the reader's boxes, as
`detkit test` scores them). With --ckpt_path, only the config's data: block is built (parsed by the
same CLI as `detkit fit`), at the checkpoint's input size; --data.* overrides it as in `detkit test`."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detkit evaluate", usage=USAGE, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--gt", type=Path, help="COCO instances json (ground truth)")
    parser.add_argument("--dt", type=Path, help="COCO results json (detections) to evaluate against --gt")
    parser.add_argument("--ckpt_path", type=Path, help="detkit checkpoint (or detkit export: .onnx, .torchscript) to run on the test split instead")
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="YAML whose data: block describes the data (with --ckpt_path; repeatable, later files win)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="folder for the report files")
    parser.add_argument("--voc", action="store_true", help="also report VOC's all-point AP at IoU 0.5 (voc_ap50)")
    parser.add_argument("--device", default="cpu", help="device the model runs on (with --ckpt_path)")
    parser.add_argument("--score_threshold", type=float, default=0.25,
                        help="lowest score counted in the confusion matrix (default 0.25)")  # fmt: skip
    return parser


def report(
    gt: GroundTruth, dt: Results, out: Path | None, voc: bool = False, score_threshold: float = 0.25
) -> dict[str, float]:
    """Evaluate, print the stats json on stdout and, with ``out``, write the report files there."""
    result = evaluate_coco(gt, dt)
    stats = dict(result.stats)
    voc_per_class = None
    if voc:
        from detkit.evaluation.voc import voc_ap

        stats["voc_ap50"], voc_per_class = voc_ap(gt, dt)
    if out is not None:
        from detkit.evaluation.report import confusion_matrix, format_table, write_report

        confusion = confusion_matrix(gt, dt, score_threshold=score_threshold)
        rows = write_report(out, stats, result, confusion, voc_per_class)
        print(format_table(rows), file=sys.stderr)
    import json

    print(json.dumps(stats))
    return stats


def evaluate_checkpoint(
    ckpt_path: Path, configs: list[Path], data_overrides: list[str], device: str = "cpu"
) -> tuple[GroundTruth, Results]:
    """Run a checkpoint (or an export: ``.onnx``, ``.torchscript``) on the test split of the data
    that the configs' ``data:`` blocks (and ``--data.*`` overrides) describe, exactly as ``detkit
    test`` does.

    The data is built through the same CLI parser as ``detkit fit`` (only the ``data:`` block is
    instantiated) at the model's own ``input_size`` and ``pad_multiple`` (a warning names each value
    the config had otherwise); images go through the same loader and letterbox, and the same
    :class:`~detkit.evaluation.CocoEvaluator` scores them against the reader's ground truth in
    original pixels.

    Returns:
        ``(ground truth, results)`` of the test split: category ids are the dataset's own where it
        has them (``category_ids``), else ``label + 1``.
    """
    import torch

    from detkit.evaluation import CocoEvaluator
    from detkit.inference import load_detector
    from detkit.ops.letterbox import to_original_pixels

    predictor = load_detector(ckpt_path, device=device)
    datamodule = _data_letterboxed_as(predictor, ckpt_path, [f"--config={path}" for path in configs] + data_overrides)
    if list(predictor.class_names) != list(datamodule.class_names):
        raise ValueError(f"{ckpt_path} was trained on classes {predictor.class_names}, the data has {datamodule.class_names}")
    datamodule.setup("test")
    evaluator = CocoEvaluator()
    with torch.inference_mode():
        for images, targets in datamodule.test_dataloader():
            found = [{k: v.cpu() for k, v in d.items()} for d in predictor.predict_batch(images)]
            evaluator.update(*to_original_pixels(found, targets))
    return evaluator.coco_inputs(datamodule.class_names, datamodule.category_ids)


def _data_letterboxed_as(predictor: BasePredictor, model_path: Path, args: list[str]) -> DetectionDataModule:
    """The DataModule of ``detkit fit ARGS``, its ``input_size`` and ``pad_multiple`` set to the
    predictor's (the letterbox it was trained with), warning about each value the config had otherwise."""
    from detkit.config import instantiate
    from detkit.data import DetectionDataModule
    from detkit.training.cli import match_model_input, parse_config

    data = parse_config(args).data
    match_model_input(data, model_path, predictor.input_size, predictor.pad_multiple)
    return instantiate(DetectionDataModule, {"class_path": "detkit.data.DetectionDataModule", "init_args": data.as_dict()})


def main(argv: list[str]) -> int:
    """Entry point of ``detkit evaluate`` (``argv`` without the subcommand)."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    try:
        if args.ckpt_path is not None:
            if args.gt is not None or args.dt is not None:
                parser.error("give either --gt/--dt or --ckpt_path, not both")
            unknown = [a for a in rest if a.startswith("-") and not a.startswith("--data")]
            if unknown:
                parser.error(f"unrecognized arguments: {' '.join(unknown)}")
            gt, dt = evaluate_checkpoint(args.ckpt_path, args.config, rest, args.device)
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                write_json(args.out / "detections.json", results_to_coco(dt, gt))
                write_json(args.out / "ground_truth.json", ground_truth_to_coco(gt))
        else:
            if rest:
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            if args.gt is None or args.dt is None:
                parser.error("give --gt and --dt (or --ckpt_path with the data's --config)")
            gc.disable()  # this command's own process: millions of small json objects, none in a cycle
            try:
                gt = load_ground_truth(args.gt)
                dt = load_results(args.dt, gt)
            finally:
                gc.enable()
        report(gt, dt, args.out, voc=args.voc, score_threshold=args.score_threshold)
    except (FileNotFoundError, ValueError, argparse.ArgumentError) as error:
        print(f"detkit evaluate: error: {error}", file=sys.stderr)
        return 2
    return 0
