"""detkit at dataset scale: the cost of each step on sets the size of COCO train2017, one section per step.

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

``epoch``
    The ``parse`` json at 1/10 of the image sizes, its images hard links to a few real JPEGs of
    each size (a file takes at most ``LINKS_PER_FILE`` links), read for one full training epoch
    by ``DetectionDataModule.train_dataloader()`` with 2 and 4 workers and no model: each
    worker's PSS after its first batch and after the epoch's last (``tools/scale_probes.py``).

``predict``
    ``detkit predict`` over folders of 1k, 10k and 100k hard-linked JPEGs, in a fresh process:
    wall time, peak RSS, the size of ``predictions.json``, the peak against the smallest folder's.

``evaluate``
    ``detkit evaluate --gt --dt`` on ``tools/bench_eval.py``'s synthetic set at 1k, 10k and 100k
    images x 100 detections (written a block at a time), and pycocotools up to
    ``--pycocotools_max`` images: wall and CPU time and peak RSS of each process.

::

    python -m tools.bench_scale parse --sizes 1000 10000 118287
    python -m tools.bench_scale parse --sizes 118287 --before /tmp/detkit-before   # + an older checkout
    python -m tools.bench_scale epoch --workers 2 4
    python -m tools.bench_scale predict --sizes 1000 10000 100000
    python -m tools.bench_scale evaluate --sizes 1000 10000 100000

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
import time
from pathlib import Path
from typing import Any

from tools.scale_sets import TRAIN2017_IMAGES, eval_set, write_dataset, write_folder

REPO = Path(__file__).resolve().parents[1]

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
    for size in args.sizes or [1_000, 10_000, TRAIN2017_IMAGES]:
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


# ---- sections: epoch, predict, evaluate ------------------------------------------------------------

def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ``command`` (from the repository root) -> (its last stdout line as json, or ``{}``; wall s,
    CPU s (user + system) and peak RSS MB of that process alone, from ``os.wait4``)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed ({proc.returncode}):\n{stderr[-3000:]}")
    lines = stdout.strip().splitlines()
    measured = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}
    return (json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}), measured


def section_epoch(args: argparse.Namespace, workdir: Path) -> None:
    """Loader workers over one full training epoch: each worker's PSS after its first batch and after the last."""
    print(f"DataLoader workers over one training epoch (no model), {cpu_description()}")
    print("(synthetic train2017-like json at 1/10 scale: 64x48-like JPEGs, hard links to a few real files; "
          "PSS from /proc/PID/smaps_rollup, shared pages divided among their sharers)\n")
    print("| images | workers | epoch s | worker PSS after 1st batch MB | after the epoch MB | growth per worker MB |")
    print("|---:|---:|---:|---|---|---|")
    for size in args.sizes or [TRAIN2017_IMAGES]:
        images_dir, ann_file = write_dataset(workdir, size, args.seed, scale=0.1)
        for workers in args.workers:
            result, _ = run_measured([sys.executable, "-m", "tools.scale_probes", "epoch", str(images_dir), str(ann_file),
                                      "--workers", str(workers)])  # fmt: skip
            first, last, growth = (", ".join(f"{v:.0f}" for v in result[k]) for k in ("pss_first_mb", "pss_last_mb", "growth_mb"))
            print(f"| {result['images']:,} | {workers} | {result['seconds']:.0f} | {first} | {last} | {growth} |", flush=True)


def section_predict(args: argparse.Namespace, workdir: Path) -> None:
    """``detkit predict`` over image folders: peak memory and time as the folder grows."""
    print(f"detkit predict over a folder (64x48 JPEGs, hard links), {cpu_description()}; batch 64, input 64, "
          "no loader workers, one torch thread; a narrow untrained detector keeping up to 100 detections an image\n")
    print("| images | wall s | images/s | peak RSS MB | peak over imports MB | predictions.json MB | peak / first row's |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    first = None
    for size in args.sizes or [1_000, 10_000, 100_000]:
        folder = write_folder(workdir, size)
        out = workdir / f"predict_{size}"
        try:
            result, _ = run_measured([sys.executable, "-m", "tools.scale_probes", "predict", str(folder), str(out)])
        finally:
            shutil.rmtree(out, ignore_errors=True)
        first = first or result["peak_mb"]
        print(f"| {result['images']:,} | {result['seconds']:.1f} | {result['images'] / result['seconds']:.0f} | "
              f"{result['peak_mb']:.0f} | {result['peak_mb'] - result['base_mb']:.0f} | {result['output_mb']:.0f} | "
              f"{result['peak_mb'] / first:.3f} |", flush=True)  # fmt: skip


_PYCOCOTOOLS = """
import json, sys, contextlib
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(sys.stderr):
    gt = COCO(sys.argv[1]); dt = gt.loadRes(sys.argv[2])
    ev = COCOeval(gt, dt, "bbox"); ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps({"map": float(ev.stats[0]), "mar_100": float(ev.stats[8])}))
"""


def section_evaluate(args: argparse.Namespace, workdir: Path) -> None:
    """``detkit evaluate --gt --dt`` at 100 detections an image: time and peak memory (and pycocotools')."""
    print(f"COCO evaluation as a whole process (imports and json reading included), {cpu_description()}")
    print("(tools/bench_eval.py's synthetic set: 1-15 objects an image, 80 classes, 100 detections an image; "
          "CPU s: user + system of the process)\n")
    print("| images | detections | dt json MB | evaluator | wall s | CPU s | peak RSS MB | map |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    for size in args.sizes or [1_000, 10_000, 100_000]:
        gt, dt = eval_set(workdir, size, args.seed)
        runs = [("detkit evaluate", [sys.executable, "-m", "detkit", "evaluate", "--gt", str(gt), "--dt", str(dt)])]
        if size <= args.pycocotools_max:
            runs.append(("pycocotools", [sys.executable, "-c", _PYCOCOTOOLS, str(gt), str(dt)]))
        for label, command in runs:
            result, measured = run_measured(command)
            print(f"| {size:,} | {size * 100:,} | {dt.stat().st_size / 2**20:.0f} | {label} | {measured['wall_s']:.1f} | "
                  f"{measured['cpu_s']:.1f} | {measured['peak_mb']:.0f} | {result['map']:.4f} |", flush=True)  # fmt: skip


SECTIONS = {"parse": section_parse, "epoch": section_epoch, "predict": section_predict, "evaluate": section_evaluate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="section", required=True)
    for name, function in SECTIONS.items():
        section = sub.add_parser(name, help=(function.__doc__ or name).strip().splitlines()[0])
        section.add_argument("--sizes", type=int, nargs="+",
                             help="numbers of images (parse: 1000 10000 118287; epoch: 118287; predict and evaluate: "
                                  "1000 10000 100000)")  # fmt: skip
        section.add_argument("--seed", type=int, default=0)
        section.add_argument("--workdir", type=Path, help="keep generated datasets here (default: a temporary folder)")
        if name == "parse":
            section.add_argument("--runs", type=int, default=1, help="fresh processes per parser and size (median wall)")
            section.add_argument("--before", type=Path, help="also time the detkit of this checkout (imported by PYTHONPATH)")
        if name == "epoch":
            section.add_argument("--workers", type=int, nargs="+", default=[2, 4], help="DataLoader workers")
        if name == "evaluate":
            section.add_argument("--pycocotools_max", type=int, default=10_000, help="run pycocotools up to this many images")
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
