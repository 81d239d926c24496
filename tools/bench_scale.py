"""detkit at dataset scale: the cost of each step on jsons the size of COCO train2017, one section per step.

Sections (subcommands):

``parse``
    A synthetic COCO instances json (seeded; boxes only, no segmentation; 640x480-like images
    named ``000000391895.jpg``, empty files; 80 categories with COCO's non-contiguous ids; a few
    crowd, clipped and empty boxes and background images) with ``N`` images and ``N * 860001 /
    118287`` boxes, the counts of train2017 at ``N = 118287``, parsed by ``pycocotools.coco.COCO``
    and by ``detkit.data.CocoReader`` (up to ``len()`` and the first item's target, what a
    DataLoader needs before it reads an image). Each parse runs ``--runs`` times, each in a fresh
    process that imports its library first: wall time of the parse alone (median), the peak
    resident memory (``ru_maxrss`` of the process) and its growth over the RSS after the imports.

::

    python -m tools.bench_scale parse --sizes 1000 10000 118287
    python -m tools.bench_scale parse --sizes 118287 --before /tmp/detkit-before   # + an older checkout

Generated files stay under ``--workdir`` (reused when run again; default a temporary folder,
removed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# COCO train2017's counts and its 80 category ids (1..90 with gaps)
TRAIN2017_IMAGES, TRAIN2017_BOXES = 118_287, 860_001
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
# (width, height) of the synthetic images and how often each occurs
IMAGE_SIZES = [((640, 480), 0.55), ((480, 640), 0.15), ((640, 427), 0.2), ((427, 640), 0.05), ((500, 375), 0.05)]


# ---- machine ------------------------------------------------------------------------------------

def cpu_description() -> str:
    """``"<model>, <n> cores, flags: avx2 avx512f amx"`` from ``/proc/cpuinfo`` (the flags it has of those three)."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    have = [f for f in ("avx2", "avx512f") if f in flags] + (["amx"] if any(f.startswith("amx") for f in flags) else [])
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(have) or 'none of avx2/avx512f/amx'}"


# ---- synthetic COCO -----------------------------------------------------------------------------

def synthetic_coco(num_images: int, seed: int) -> dict[str, Any]:
    """A COCO instances dict with ``num_images`` images and train2017's boxes per image (boxes only).

    About 1% background images, 1% crowd boxes, 0.1% boxes reaching past the image (clipped by
    detkit) and 0.01% of zero width (dropped); annotations in random image order, as in COCO.
    """
    rng = np.random.default_rng(seed)
    num_boxes = round(num_images * TRAIN2017_BOXES / TRAIN2017_IMAGES)
    image_ids = rng.choice(np.arange(1, 600_000), size=num_images, replace=False)
    sizes = np.array([s for s, _ in IMAGE_SIZES])[rng.choice(len(IMAGE_SIZES), num_images, p=[p for _, p in IMAGE_SIZES])]
    images = [{"id": int(i), "file_name": f"{i:012d}.jpg", "width": int(w), "height": int(h)}
              for i, (w, h) in zip(image_ids, sizes)]  # fmt: skip
    annotated = np.flatnonzero(rng.random(num_images) >= 0.01)
    owner = rng.choice(annotated, size=num_boxes)
    wh = sizes[owner].astype(np.float64)
    box_wh = np.floor(wh * rng.uniform(0.02, 0.8, size=(num_boxes, 2)) * 100) / 100
    xy = np.floor((wh - box_wh) * rng.random((num_boxes, 2)) * 100) / 100
    outside = rng.random(num_boxes) < 0.001
    xy[outside] += box_wh[outside] / 2  # past the right and bottom edges
    box_wh[rng.random(num_boxes) < 0.0001, 0] = 0.0
    area = np.round(box_wh.prod(axis=1) * rng.uniform(0.4, 0.9, num_boxes), 2)
    crowd = (rng.random(num_boxes) < 0.01).astype(int)
    categories = rng.choice(COCO_CATEGORY_IDS, size=num_boxes)
    annotations = [
        {"id": k + 1, "image_id": int(image_ids[o]), "category_id": int(c), "bbox": [x, y, w, h], "area": a,
         "iscrowd": int(z)}  # fmt: skip
        for k, (o, c, (x, y), (w, h), a, z) in enumerate(
            zip(owner, categories, xy.tolist(), box_wh.tolist(), area.tolist(), crowd)
        )
    ]
    return {
        "info": {"description": f"detkit synthetic COCO, {num_images} images, seed {seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": f"class{i}", "supercategory": "thing"} for i in COCO_CATEGORY_IDS],
    }


def dataset_paths(workdir: Path, num_images: int, seed: int) -> tuple[Path, Path, Path]:
    """``(images_dir, ann_file, marker)`` of the synthetic dataset in ``workdir`` (``marker``: it is complete)."""
    folder = workdir / f"coco_{num_images}_seed{seed}"
    return folder / "images", folder / "instances.json", folder / ".complete"


def write_dataset(workdir: Path, num_images: int, seed: int) -> tuple[Path, Path]:
    """``(images_dir, ann_file)`` of the synthetic dataset under ``workdir`` (written once; empty image files).

    Written in a child process: a process's ``ru_maxrss`` starts from the peak of the process it
    was started from (Linux carries it over fork and exec), so the process that starts the
    measured ones must stay small.
    """
    images_dir, ann_file, done = dataset_paths(workdir, num_images, seed)
    if not done.is_file():
        script = "import sys; from tools.bench_scale import _write; _write(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))"
        subprocess.run([sys.executable, "-c", script, str(workdir), str(num_images), str(seed)], cwd=REPO, check=True)
    return images_dir, ann_file


def _write(workdir: str, num_images: int, seed: int) -> None:
    import orjson

    images_dir, ann_file, done = dataset_paths(Path(workdir), num_images, seed)
    images_dir.mkdir(parents=True, exist_ok=True)
    data = synthetic_coco(num_images, seed)
    ann_file.write_bytes(orjson.dumps(data))
    for image in data["images"]:
        (images_dir / image["file_name"]).touch()
    done.touch()


# ---- section: parse -----------------------------------------------------------------------------

# Run in a fresh process: argv = runner, ann_file, images_dir; prints one json line.
_PARSE_CHILD = r"""
import contextlib, json, resource, sys, time, warnings
runner, ann_file, images_dir = sys.argv[1:4]

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

if runner == "pycocotools":
    from pycocotools.coco import COCO
    import pycocotools
    where = pycocotools.__file__
    base = peak_mb()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # its progress prints
        coco = COCO(ann_file)
    count = len(coco.getImgIds())
    boxes = len(coco.anns)
else:
    import detkit
    from detkit.data import CocoReader
    where = detkit.__file__
    base = peak_mb()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic json's clipped / dropped boxes are counted in warnings
        reader = CocoReader(images_dir, ann_file)
        count = len(reader)
        reader.target(0)
    boxes = sum(len(t["labels"]) for t in reader.targets)
wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "peak_mb": peak_mb(), "base_mb": base, "images": count, "boxes": boxes, "where": where}))
"""


def measure_parse(runner: str, ann_file: Path, images_dir: Path, pythonpath: Path | None) -> dict[str, Any]:
    """One fresh process parsing ``ann_file`` with ``runner`` (``pycocotools`` or ``detkit``).

    It starts in ``pythonpath`` (else the json's folder): ``python -c`` puts its working folder first on ``sys.path``.
    """
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", _PARSE_CHILD, runner, str(ann_file), str(images_dir)],
                          env=env, cwd=pythonpath or ann_file.parent, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{runner} parse failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def section_parse(args: argparse.Namespace, workdir: Path) -> None:
    """Parse a COCO json: pycocotools' COCO against detkit's CocoReader (and an older detkit)."""
    runners: list[tuple[str, str, Path | None]] = [("pycocotools", "pycocotools", None), ("detkit", "detkit", REPO)]
    if args.before is not None:
        runners.insert(1, ("detkit before", "detkit", args.before.resolve()))
    print(f"COCO json parse, {cpu_description()}; median wall of {args.runs} fresh processes, largest peak RSS")
    print("(+RSS: peak RSS over the RSS after imports; ratios are detkit / pycocotools, < 1 is better; "
          "boxes: pycocotools' all, detkit's kept after dropping empty ones)\n")
    print("| images | boxes | json MB | parser | wall s | peak RSS MB | +RSS MB | wall ratio | +RSS ratio |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        images_dir, ann_file = write_dataset(workdir, size, args.seed)
        json_mb = ann_file.stat().st_size / 2**20
        reference: tuple[float, float] | None = None
        for label, runner, path in runners:
            runs = [measure_parse(runner, ann_file, images_dir, path) for _ in range(args.runs)]
            if runner == "detkit" and not runs[0]["where"].startswith(str(path)):
                raise RuntimeError(f"{label} imported detkit from {runs[0]['where']}, not {path}")
            wall = statistics.median(r["wall_s"] for r in runs)
            peak = max(r["peak_mb"] for r in runs)
            grown = max(r["peak_mb"] - r["base_mb"] for r in runs)
            reference = reference or (wall, grown)
            ratios = "1 | 1" if runner == "pycocotools" else f"{_ratio(wall, reference[0], 0.01)} | {_ratio(grown, reference[1], 1)}"
            print(f"| {runs[0]['images']:,} | {runs[0]['boxes']:,} | {json_mb:.0f} | {label} | {wall:.2f} | {peak:.0f} | "
                  f"{grown:.0f} | {ratios} |", flush=True)  # fmt: skip


def _ratio(value: float, reference: float, resolution: float) -> str:
    """``value / reference`` to 2 decimals, or ``-`` where the reference is below what is measured reliably."""
    return f"{value / reference:.2f}" if reference >= resolution else "-"


SECTIONS = {"parse": section_parse}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="section", required=True)
    for name, function in SECTIONS.items():
        section = sub.add_parser(name, help=(function.__doc__ or name).strip().splitlines()[0])
        section.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, TRAIN2017_IMAGES],
                             help="numbers of images (boxes scale as in train2017)")  # fmt: skip
        section.add_argument("--runs", type=int, default=1, help="fresh processes per parser and size (median wall)")
        section.add_argument("--seed", type=int, default=0)
        section.add_argument("--workdir", type=Path, help="keep generated datasets here (default: a temporary folder)")
        section.add_argument("--before", type=Path, help="also time the detkit of this checkout (imported by PYTHONPATH)")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        SECTIONS[args.section](args, args.workdir)
        return
    workdir = Path(tempfile.mkdtemp(prefix="detkit_bench_scale_"))
    try:
        SECTIONS[args.section](args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
