"""Benchmark ``detkit evaluate --gt --dt`` against pycocotools and faster-coco-eval as whole processes.

Generates a synthetic COCO ground truth and results file (default 5,000 images x 100 detections x
80 classes) in a temporary folder, runs each evaluator in its own Python process (imports and json
loading included, as a user pays them), checks that all report the same 12 stats and prints the
times and speed-ups over pycocotools::

    python -m tools.bench_eval                # full size
    python -m tools.bench_eval --images 500   # quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_PYCOCOTOOLS = """
import json, sys, contextlib
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(sys.stderr):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    ev = COCOeval(gt, dt, "bbox"); ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps([float(s) for s in ev.stats]))
"""

_FASTER_COCO_EVAL = """
import json, sys, contextlib
from faster_coco_eval import COCO, COCOeval_faster
with contextlib.redirect_stdout(sys.stderr):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    ev = COCOeval_faster(gt, dt, "bbox"); ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps([float(s) for s in ev.stats[:12]]))
"""

_DETKIT = "import sys; from detkit.commands import main; sys.exit(main())"

STAT_NAMES = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # fmt: skip


def make_dataset(folder: Path, num_images: int, dets_per_image: int, num_classes: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``gt.json`` and ``dt.json``: COCO-like images with 1-15 objects (1 % crowds) and
    ``dets_per_image`` detections each, half near an object (mostly the right class), half random."""
    rng = np.random.default_rng(seed)
    category_ids = np.arange(1, num_classes + 1) + (np.arange(num_classes) // 10)  # non-contiguous, like COCO
    images, annotations, detections = [], [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id:012d}.jpg"})
        n = int(rng.integers(1, 16))
        wh = np.exp(rng.uniform(np.log(6), np.log(300), (n, 2))).round(2)
        wh = np.minimum(wh, [width - 1, height - 1])
        xy = (rng.uniform(0, 1, (n, 2)) * ([width, height] - wh)).round(2)
        cats = category_ids[rng.integers(0, num_classes, n)]
        crowd = rng.random(n) < 0.01
        for box, cat, c in zip(np.concatenate((xy, wh), axis=1).tolist(), cats.tolist(), crowd.tolist()):
            area = box[2] * box[3] * float(rng.uniform(0.5, 0.9))  # segmentation area < box area, as in COCO
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat, "bbox": box,
                                "area": round(area, 2), "iscrowd": int(c)})  # fmt: skip
        near = dets_per_image // 2
        pick = rng.integers(0, n, near)
        jitter = 1 + rng.normal(0, 0.15, (near, 4)) * [0.3, 0.3, 1, 1]
        near_boxes = np.concatenate((xy[pick] + wh[pick] * (jitter[:, :2] - 1), wh[pick] * jitter[:, 2:]), axis=1)
        near_cats = np.where(rng.random(near) < 0.8, cats[pick], category_ids[rng.integers(0, num_classes, near)])
        far = dets_per_image - near
        far_wh = np.exp(rng.uniform(np.log(6), np.log(300), (far, 2)))
        far_boxes = np.concatenate((rng.uniform(0, 1, (far, 2)) * ([width, height] - np.minimum(far_wh, 300)), far_wh), axis=1)
        boxes = np.concatenate((near_boxes, far_boxes)).clip(min=0.5).round(2)
        dcats = np.concatenate((near_cats, category_ids[rng.integers(0, num_classes, far)]))
        scores = np.concatenate((rng.uniform(0.2, 1.0, near), rng.uniform(0.0, 0.6, far))).round(3)
        for box, cat, score in zip(boxes.tolist(), dcats.tolist(), scores.tolist()):
            detections.append({"image_id": image_id, "category_id": cat, "bbox": box, "score": score})
    categories = [{"id": int(c), "name": f"class_{c}", "supercategory": "thing"} for c in category_ids]
    gt_file, dt_file = folder / "gt.json", folder / "dt.json"
    gt_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    dt_file.write_text(json.dumps(detections))
    return gt_file, dt_file


def run(name: str, command: list[str]) -> tuple[float, list[float]]:
    """Run ``command``, return (wall seconds, the 12 stats it printed as its last stdout line)."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    stats = [float(out[k]) for k in STAT_NAMES] if isinstance(out, dict) else [float(v) for v in out]
    return seconds, stats


def main(argv: list[str] | None = None) -> int:
    """Generate the data, time the three evaluators, print a table; non-zero exit if stats differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="number of images")
    parser.add_argument("--dets-per-image", type=int, default=100, help="detections per image")
    parser.add_argument("--classes", type=int, default=80, help="number of categories")
    parser.add_argument("--repeat", type=int, default=1, help="runs per evaluator (the fastest counts)")
    parser.add_argument("--skip-pycocotools", action="store_true", help="do not run pycocotools (slow)")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="detkit_bench_eval_"))
    try:
        start = time.perf_counter()
        gt_file, dt_file = make_dataset(folder, args.images, args.dets_per_image, args.classes)
        size = (gt_file.stat().st_size + dt_file.stat().st_size) / 2**20
        print(f"data: {args.images} images x {args.dets_per_image} dets x {args.classes} classes, "
              f"{size:.0f} MiB json, made in {time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
        files = [str(gt_file), str(dt_file)]
        detkit = shutil.which("detkit")
        tools = {"detkit evaluate": ([detkit] if detkit else [sys.executable, "-c", _DETKIT]) + ["evaluate", "--gt", files[0], "--dt", files[1]]}
        if not args.skip_pycocotools:
            tools["pycocotools"] = [sys.executable, "-c", _PYCOCOTOOLS, *files]
        try:
            import faster_coco_eval  # noqa: F401

            tools["faster-coco-eval"] = [sys.executable, "-c", _FASTER_COCO_EVAL, *files]
        except ImportError:
            print("faster-coco-eval is not installed (pip install faster-coco-eval); skipping it")
        results = {}
        for name, command in tools.items():
            runs = [run(name, command) for _ in range(args.repeat)]
            results[name] = (min(t for t, _ in runs), runs[0][1])
            print(f"  {name:<18} {results[name][0]:7.2f} s", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    reference = results.get("pycocotools", results["detkit evaluate"])
    base = results["pycocotools"][0] if "pycocotools" in results else None
    print(f"\n{'evaluator':<18} {'seconds':>8} {'vs pycocotools':>15} {'max |stat diff|':>16}")
    for name, (seconds, stats) in results.items():
        ratio = f"{base / seconds:14.1f}x" if base else f"{'-':>15}"
        diff = max(abs(a - b) for a, b in zip(stats, reference[1]))
        print(f"{name:<18} {seconds:8.2f} {ratio} {diff:16.2e}")
    print("\n" + json.dumps(dict(zip(STAT_NAMES, results["detkit evaluate"][1]))))
    same = all(max(abs(a - b) for a, b in zip(s, reference[1])) <= 1e-12 for _, s in results.values())
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
