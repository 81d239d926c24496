"""``detkit export``: a checkpoint -> ONNX or TorchScript (decoding and NMS inside), optionally int8."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _calibration_images(options: argparse.Namespace) -> list:
    """Up to ``--calib-count`` images, evenly spread over ``--calib-images DIR`` or the training split of ``--config``."""
    from detkit.data.images import image_files
    from detkit.deploy.quantize import calibration_sample

    if options.calib_images:
        return calibration_sample(image_files(options.calib_images), options.calib_count)
    from detkit.training.cli import build_data

    config = [arg for path in options.config for arg in ("--config", path)]
    return calibration_sample(build_data(config).reader("train"), options.calib_count)


def main(argv: list[str]) -> int:
    """Run ``detkit export``; returns the exit status (0: written, 2: bad input)."""
    parser = argparse.ArgumentParser(
        prog="detkit export",
        description="Write a trained detector as one file that takes uint8 letterboxed images [B, 3, S, S] and "
        "returns boxes [B, D, 4], scores, labels and num_detections (normalisation, decoding and class-aware "
        "NMS inside), plus <file>.json with the class names, input size and letterbox rule.",
        allow_abbrev=False,
    )
    parser.add_argument("--ckpt_path", required=True, help="a detkit checkpoint")
    parser.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    parser.add_argument("--out", help="output folder (default: export/ beside the checkpoint's checkpoints/ folder)")
    parser.add_argument("--name", default="model", help="file name without suffix (default: model)")
    parser.add_argument("--dynamic-batch", action="store_true", help="ONNX: accept any batch size (default 1)")
    parser.add_argument("--score-threshold", type=float, help="keep detections above this (default: the head's)")
    parser.add_argument("--int8", action="store_true", help="ONNX: also write <name>.int8.onnx (static QDQ int8 convs)")
    parser.add_argument("--calib-images", help="with --int8: a folder of calibration images")
    parser.add_argument("--config", nargs="+", help="with --int8: training config(s); calibrate on its training images")
    parser.add_argument("--calib-count", type=int, default=100, help="with --int8: calibration images (default 100)")
    options = parser.parse_args(argv)
    if options.int8 and options.format != "onnx":
        parser.error("--int8 needs --format onnx")
    if options.int8 and not (options.calib_images or options.config):
        parser.error("--int8 needs --calib-images DIR or --config FILE (calibration images)")
    from detkit.deploy.export import SUFFIXES, export_model
    from detkit.inference import load_detector

    ckpt = Path(options.ckpt_path)
    out = Path(options.out) if options.out else ckpt.resolve().parent.parent / "export"
    try:
        model = load_detector(ckpt)
        path = export_model(model, out / f"{options.name}{SUFFIXES[options.format]}", options.format,
                            options.dynamic_batch, options.score_threshold)  # fmt: skip
        written = [path]
        if options.int8:
            from detkit.deploy.quantize import quantize_int8

            written.append(quantize_int8(path, out / f"{options.name}.int8.onnx", _calibration_images(options)))
    except (FileNotFoundError, ValueError, NotImplementedError, ImportError) as error:
        print(f"detkit export: {ckpt}: {error}" if isinstance(error, NotImplementedError) else f"detkit export: {error}",
              file=sys.stderr)  # fmt: skip
        return 2
    for path in written:
        print(f"wrote {path} (+ {path.name}.json)")
    return 0
