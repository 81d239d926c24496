"""``detkit evaluate``: COCO stats and reports for a results json, or for a checkpoint on the test split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from detkit.evaluation.cocoeval import evaluate_coco
from detkit.evaluation.cocojson import GroundTruth, Results, load_ground_truth, load_results, write_json

USAGE = """\
detkit evaluate --gt GT.json --dt DETECTIONS.json [--out DIR] [--voc]
detkit evaluate --ckpt_path best.ckpt --config CONFIG.yaml [--data.init_args.X V ...] [--out DIR] [--voc]"""

_EPILOG = """\
Prints the 12 COCO stats (map, map_50, ..., mar_large) as one json object on stdout. With --out
it also writes metrics.json, per_class.csv (also printed, on stderr), pr_curves.csv,
pr_overall.png, pr_per_class.png, confusion_matrix.csv/.png and, for a checkpoint,
detections.json (COCO results; and ground_truth.json when the data has no COCO json of its own).
With --ckpt_path, only the config's data: block is read (other blocks are ignored); --data.*
overrides it as in `detkit test`."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detkit evaluate", usage=USAGE, epilog=_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--gt", type=Path, help="COCO instances json (ground truth)")
    parser.add_argument("--dt", type=Path, help="COCO results json (detections) to evaluate against --gt")
    parser.add_argument("--ckpt_path", type=Path, help="detkit checkpoint to run on the test split instead")
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
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """Run a checkpoint on the test split of the data the configs' ``data:`` blocks (and ``--data.*``
    overrides) describe.

    Returns:
        ``(COCO ground truth dict, COCO results list, whether the ground truth was generated)``:
        COCO category ids where the dataset has them (``category_ids``) and its own json as ground
        truth; otherwise ``label + 1`` and a ground truth built from the dataset's targets.
    """
    import torch

    from detkit.commands.datamodule_config import build_datamodule
    from detkit.evaluation.cocojson import detections_to_coco, read_json, targets_to_coco
    from detkit.inference import load_detector
    from detkit.module import to_original_pixels

    datamodule = build_datamodule(configs, data_overrides)
    predictor = load_detector(ckpt_path, device=device)
    if list(predictor.class_names) != list(datamodule.class_names):
        raise ValueError(f"{ckpt_path} was trained on classes {predictor.class_names}, the data has {datamodule.class_names}")
    datamodule.setup("test")
    raw = datamodule.test_dataset.dataset
    category_ids = getattr(raw, "category_ids", None)
    detections, image_ids, targets = [], [], []
    with torch.inference_mode():
        for images, batch_targets in datamodule.test_dataloader():
            found = predictor.detector.predict_batch(images.to(predictor.device))
            found = [{k: v.cpu() for k, v in d.items()} for d in found]
            found, originals = to_original_pixels(found, batch_targets)
            detections += found
            image_ids += [int(t["image_id"]) for t in batch_targets]
            targets += originals
    results = detections_to_coco(detections, image_ids, category_ids)
    ann_file = getattr(raw, "ann_file", None)
    if category_ids is not None and ann_file is not None:
        return read_json(ann_file), results, False
    raw_targets = [raw.target(i) if hasattr(raw, "target") else raw[i][1] for i in range(len(raw))]
    return targets_to_coco(raw_targets, datamodule.class_names), results, True


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
            gt_dict, results, generated = evaluate_checkpoint(args.ckpt_path, args.config, rest, args.device)
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                write_json(args.out / "detections.json", results)
                if generated:
                    write_json(args.out / "ground_truth.json", gt_dict)
            gt = load_ground_truth(gt_dict, source="ground truth of the test split")
            dt = load_results(results, gt, source=f"detections of {args.ckpt_path}")
        else:
            if rest:
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            if args.gt is None or args.dt is None:
                parser.error("give --gt and --dt (or --ckpt_path with the data's --config)")
            gt = load_ground_truth(args.gt)
            dt = load_results(args.dt, gt)
        report(gt, dt, args.out, voc=args.voc, score_threshold=args.score_threshold)
    except (FileNotFoundError, ValueError, argparse.ArgumentError) as error:
        print(f"detkit evaluate: error: {error}", file=sys.stderr)
        return 2
    return 0
