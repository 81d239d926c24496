"""``detkit evaluate``: COCO stats and reports for a results json, or for a checkpoint on the test split."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
detkit evaluate --gt GT.json --dt DETECTIONS.json [--out DIR [--images DIR]] [--voc]
detkit evaluate --ckpt_path best.ckpt --config CONFIG.yaml [--data.X V ...] [--out DIR] [--voc]"""

_EPILOG = """\
Prints the 12 COCO stats (map, map_50, ..., mar_large) as one json object on stdout. With --out
it also writes metrics.json, per_class.csv (also printed, on stderr), pr_curves.csv,
pr_overall.png, pr_per_class.png, confusion_matrix.csv/.png, report.html (everything in one page
a browser opens: also the TIDE error decomposition and failure galleries, drawn on the images of
--images or of the test split; see `detkit report --help`) and, for a checkpoint,
detections.json (COCO results) and ground_truth.json (what was scored: the reader's boxes, as
`detkit test` scores them, with each image's file_name, width and height). With --ckpt_path,
only the config's data: block is built (parsed by the same CLI as `detkit fit`), at the
checkpoint's input size; --data.* overrides it as in `detkit test`."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detkit evaluate", usage=USAGE, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--gt", type=Path, help="COCO instances json (ground truth)")
    parser.add_argument("--dt", type=Path, help="COCO results json (detections) to evaluate against --gt")
    parser.add_argument("--ckpt_path", type=Path, help="detkit checkpoint (or detkit export: .onnx, .torchscript) to run on the test split instead")
    parser.add_argument("--config", type=Path, action="append", default=[],
                        help="YAML whose data: block describes the data (with --ckpt_path; repeatable, later files win)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="folder for the report files")
    parser.add_argument("--images", type=Path, help="with --gt/--dt --out: folder of --gt's file_names (drawn in report.html)")
    parser.add_argument("--voc", action="store_true", help="also report VOC's all-point AP at IoU 0.5 (voc_ap50)")
    parser.add_argument("--device", default="cpu", help="device the model runs on (with --ckpt_path)")
    parser.add_argument("--score_threshold", type=float, default=0.25,
                        help="lowest score counted in the confusion matrix (default 0.25)")  # fmt: skip
    return parser


def report(
    gt: GroundTruth, dt: Results, out: Path | None, voc: bool = False, score_threshold: float = 0.25, **html: Any
) -> dict[str, float]:
    """Evaluate, print the stats json on stdout and, with ``out``, write the report files there.

    ``html`` goes to :func:`~detkit.pictures.report_page.write_html_report` (``images``, ``model``, ...).
    """
    result = evaluate_coco(gt, dt, keep_matches=False)  # the reports match again what they draw
    stats = dict(result.stats)
    voc_per_class = None
    if voc:
        from detkit.evaluation.voc import voc_ap

        stats["voc_ap50"], voc_per_class = voc_ap(gt, dt)
    if out is not None:
        from detkit.evaluation.report import confusion_matrix, format_table, write_report

        from detkit.pictures.report_page import write_html_report

        confusion = confusion_matrix(gt, dt, score_threshold=score_threshold)
        rows = write_report(out, stats, result, confusion, voc_per_class, score_threshold=score_threshold)
        print(format_table(rows), file=sys.stderr)
        page = write_html_report(out, gt, dt, result=result, rows=rows, confusion=confusion,
                                 score_threshold=score_threshold, **html)  # fmt: skip
        print(f"report: {page}", file=sys.stderr)
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
    from detkit.inference import load_detector

    predictor = load_detector(ckpt_path, device=device)
    datamodule = data_letterboxed_as(predictor, ckpt_path, [f"--config={path}" for path in configs] + data_overrides)
    gt, dt, _ = run_on_test_split(predictor, datamodule, str(ckpt_path))
    return gt, dt


def run_on_test_split(
    predictor: BasePredictor, datamodule: DetectionDataModule, name: str = "the model"
) -> tuple[GroundTruth, Results, dict[int, dict[str, Any]]]:
    """Detect on the test split of ``datamodule`` (letterboxed as ``predictor`` was trained) and score
    it as ``detkit test`` does -> ``(ground truth, results, image_id -> {file_name, height, width})``.

    Raises:
        ValueError: The model's classes differ from the data's (``name`` names the model).
    """
    import torch

    from detkit.evaluation import CocoEvaluator
    from detkit.ops.letterbox import to_original_pixels

    if list(predictor.class_names) != list(datamodule.class_names):
        raise ValueError(f"{name} was trained on classes {predictor.class_names}, the data has {datamodule.class_names}")
    datamodule.setup("test")
    evaluator = CocoEvaluator()
    images: dict[int, dict[str, Any]] = {}
    with torch.inference_mode():
        for batch, targets in datamodule.test_dataloader():
            found = [{k: v.cpu() for k, v in d.items()} for d in predictor.predict_batch(batch)]
            evaluator.update(*to_original_pixels(found, targets))
            for t in targets:
                height, width = (int(v) for v in t["orig_size"])
                images[int(t["image_id"])] = {"file_name": t["file_name"], "height": height, "width": width}
    gt, dt = evaluator.coco_inputs(datamodule.class_names, datamodule.category_ids)
    return gt, dt, images


def folder_images(folder: Path, gt_json: dict[str, Any]) -> Any:
    """``image_id -> pixels`` of the ``file_name`` each image of a COCO json has, under ``folder``."""
    from detkit.data.images import read_image

    files = {int(im["id"]): im["file_name"] for im in gt_json.get("images", []) if "file_name" in im}
    return lambda image_id: read_image(folder / files[image_id]) if image_id in files else None


def image_sizes(gt_json: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """``image_id -> (height, width)`` of the images of a COCO json that give both."""
    sizes = {}
    for im in gt_json.get("images", []):
        if isinstance(im.get("height"), (int, float)) and isinstance(im.get("width"), (int, float)):
            sizes[int(im["id"])] = (int(im["height"]), int(im["width"]))
    return sizes


def coco_with_images(gt: GroundTruth, images: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """:func:`ground_truth_to_coco` with each image's ``file_name``, ``height`` and ``width`` where known."""
    data = ground_truth_to_coco(gt)
    data["images"] = [{**im, **images.get(im["id"], {})} for im in data["images"]]
    return data


def data_letterboxed_as(predictor: BasePredictor, model_path: Path, args: list[str]) -> DetectionDataModule:
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
    html: dict[str, Any] = {}  # for report.html (with --out)
    try:
        if args.ckpt_path is not None:
            if args.gt is not None or args.dt is not None:
                parser.error("give either --gt/--dt or --ckpt_path, not both")
            unknown = [a for a in rest if a.startswith("-") and not a.startswith("--data")]
            if unknown:
                parser.error(f"unrecognized arguments: {' '.join(unknown)}")
            from detkit.inference import load_detector

            predictor = load_detector(args.ckpt_path, device=args.device)
            config_args = [f"--config={path}" for path in args.config] + rest
            datamodule = data_letterboxed_as(predictor, args.ckpt_path, config_args)
            gt, dt, images = run_on_test_split(predictor, datamodule, str(args.ckpt_path))
            if args.out is not None:
                from detkit.data.readers.base import pixels_by_image_id

                args.out.mkdir(parents=True, exist_ok=True)
                write_json(args.out / "detections.json", results_to_coco(dt, gt))
                write_json(args.out / "ground_truth.json", coco_with_images(gt, images))
                html = {"images": pixels_by_image_id(datamodule.reader("test")), "model": predictor,
                        "image_sizes": {i: (v["height"], v["width"]) for i, v in images.items()},
                        "source": {"checkpoint": args.ckpt_path, "config": ", ".join(map(str, args.config)),
                                   "test data": repr(datamodule.reader("test"))}}  # fmt: skip
        else:
            if rest:
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            if args.gt is None or args.dt is None:
                parser.error("give --gt and --dt (or --ckpt_path with the data's --config)")
            gc.disable()  # this command's own process: millions of small json objects, none in a cycle
            try:
                from detkit.evaluation.cocojson import read_json

                gt_json = read_json(args.gt)
                gt = load_ground_truth(gt_json, source=str(args.gt))
                if args.out is not None:
                    html = {"image_sizes": image_sizes(gt_json), "source": {"ground truth": args.gt, "detections": args.dt}}
                    if args.images is not None:
                        html["images"] = folder_images(args.images, gt_json)
                del gt_json  # the arrays hold what is evaluated
                dt = load_results(args.dt, gt)  # streams: a block of detections at a time
            finally:
                gc.enable()
        report(gt, dt, args.out, voc=args.voc, score_threshold=args.score_threshold, **(html if args.out is not None else {}))
    except (FileNotFoundError, ValueError, argparse.ArgumentError) as error:
        print(f"detkit evaluate: error: {error}", file=sys.stderr)
        return 2
    return 0
