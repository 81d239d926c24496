"""``detkit explain``: feature-map grids and mean-activation overlays of a trained detector on images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """Run ``detkit explain``; returns the exit status (0: written, 2: bad input)."""
    parser = argparse.ArgumentParser(
        prog="detkit explain",
        description="For each image: a grid of the most active channels of every backbone stage and pyramid level "
        "(<layer>.png, labelled with stride and channel index) and mean_activation.png (each level's mean "
        "over channels on the letterboxed image); with --gradcam, gradcam.png: a Grad-CAM map per detection.",
        allow_abbrev=False,
    )
    parser.add_argument("--ckpt_path", required=True, help="a detkit checkpoint")
    parser.add_argument("--image", required=True, help="an image file or a folder of images")
    parser.add_argument("--layers", help="comma-separated layers, e.g. backbone.2,neck.P3 (default: all)")
    parser.add_argument("--channels", type=int, default=16, help="channels per grid (the most active by mean)")
    parser.add_argument("--gradcam", action="store_true", help="also gradcam.png: a localization map per detection")
    parser.add_argument("--top", type=int, default=8, help="with --gradcam: the K highest-scoring detections")
    parser.add_argument("--cam", choices=["hirescam", "gradcam", "eigencam"], default="hirescam",
                        help="with --gradcam: the method (hirescam: gradient x activation, local to the detection; "
                        "gradcam: pooled gradients; eigencam: gradient-free)")  # fmt: skip
    parser.add_argument("--all-levels", action="store_true", help="with --gradcam: every pyramid level, not only the detection's own")
    parser.add_argument("--out", help="output folder (default: explain/ beside the checkpoint's checkpoints/ folder)")
    options = parser.parse_args(argv)
    from detkit.data.images import image_files
    from detkit.pictures.explain import explain_images
    from detkit.inference import load_detector

    ckpt = Path(options.ckpt_path)
    out = Path(options.out) if options.out else ckpt.resolve().parent.parent / "explain"
    layers = [name.strip() for name in options.layers.split(",")] if options.layers else None
    try:
        images = image_files(options.image)
        model = load_detector(ckpt)
        written = explain_images(model, images, out, layers, options.channels)
        if options.gradcam:
            from detkit.pictures.gradcam import save_gradcam

            levels = "all" if options.all_levels else "own"
            for path in images:
                written.append(save_gradcam(model, path, out / path.stem / "gradcam.png", top=options.top,
                                            levels=levels, method=options.cam))  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        print(f"detkit explain: {error}", file=sys.stderr)
        return 2
    print(f"{len(written)} pictures of {len(images)} images under {out}")
    return 0
