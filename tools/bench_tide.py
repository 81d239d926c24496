"""Benchmark detkit's TIDE error decomposition against tidecv 1.0.1 on synthetic COCO data.

Makes tools/bench_eval's seeded data set (default 5,000 images x 100 detections x 80 classes), runs
detkit's :func:`~detkit.evaluation.tide.evaluate_tide` and tidecv's ``TIDE.evaluate`` +
``get_main_errors`` + ``get_special_errors`` each in a fresh process, checks that their numbers
agree and prints a markdown table. tidecv needs numpy < 2, so it runs from its own virtual
environment (see tests/evaluation/data/make_tide_reference.py); "n/a" when there is none::

    python -m tools.bench_tide                                   # tidecv from /tmp/tidevenv
    python -m tools.bench_tide --images 500 --tidecv-python none # quick, detkit only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from detkit.machine import cpu_description

from tools.bench_eval import make_dataset

_DETKIT = """
import json, sys, time
start = time.perf_counter()
from detkit.evaluation.cocojson import read_json
from detkit.evaluation.tide import evaluate_tide
gt, dt = read_json(sys.argv[1]), read_json(sys.argv[2])
loaded = time.perf_counter()
out = evaluate_tide(gt, dt)
done = time.perf_counter()
print(json.dumps({"load": loaded - start, "decompose": done - loaded, "ap": out.ap, "errors": out.errors}))
"""

# tidecv's datasets.COCO needs segmentations for masks; this builds the same Data through its public API.
_TIDECV = """
import json, sys, time
start = time.perf_counter()
from tidecv import TIDE, Data
gt_json, dt_json = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
gt, dt = Data("gt", max_dets=100), Data("dt")
for image in gt_json["images"]:
    gt.add_image(image["id"], image["file_name"])
for cat in gt_json["categories"]:
    gt.add_class(cat["id"], cat["name"])
for a in gt_json["annotations"]:
    (gt.add_ignore_region if a["iscrowd"] else gt.add_ground_truth)(a["image_id"], a["category_id"], a["bbox"])
for d in dt_json:
    dt.add_detection(d["image_id"], d["category_id"], d["score"], d["bbox"])
loaded = time.perf_counter()
tide = TIDE()
run = tide.evaluate(gt, dt, mode=TIDE.BOX, name="run")
main, special = tide.get_main_errors()["run"], tide.get_special_errors()["run"]
done = time.perf_counter()
names = dict(Cls="classification", Loc="localization", Both="both", Dupe="duplicate", Bkg="background",
             Miss="missed", FalsePos="false_positive", FalseNeg="false_negative")
errors = {names[k]: v for k, v in {**main, **special}.items()}
print(json.dumps({"load": loaded - start, "decompose": done - loaded, "ap": run.ap, "errors": errors}))
"""


def run(command: list[str], timeout: float) -> dict | None:
    """Run a timing script; its last stdout line is a json dict (None if it failed or timed out)."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  timed out after {timeout:.0f} s: {command[0]}", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"  failed ({proc.returncode}): {proc.stderr[-1500:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Make the data, time both decompositions, print the table; non-zero exit if their numbers differ."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tidecv-python", default=os.environ.get("TIDECV_PYTHON", "/tmp/tidevenv/bin/python"),
                        help="python of a venv with tidecv==1.0.1 ('none' to skip)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed to each run")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="detkit_bench_tide_"))
    try:
        gt_file, dt_file = make_dataset(folder, args.images, args.dets_per_image, args.classes, seed=args.seed)
        files = [str(gt_file), str(dt_file)]
        results = {"detkit": run([sys.executable, "-c", _DETKIT, *files], args.timeout)}
        tidecv = Path(args.tidecv_python)
        if args.tidecv_python != "none" and tidecv.is_file():
            results["tidecv 1.0.1"] = run([str(tidecv), "-c", _TIDECV, *files], args.timeout)
        else:
            results["tidecv 1.0.1"] = None
            print(f"no tidecv python at {args.tidecv_python}: tidecv is n/a", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    ours = results["detkit"]
    if ours is None:
        return 1
    print(f"TIDE decomposition, {args.images} images x {args.dets_per_image} detections x {args.classes} classes "
          f"(seed {args.seed}); {cpu_description()}\n")  # fmt: skip
    print("| implementation | json load s | decompose s | AP50 | max abs diff vs detkit (AP, 8 dAP) |")
    print("|---|---:|---:|---:|---:|")
    same = True
    for name, out in results.items():
        if out is None:
            print(f"| {name} | n/a | n/a | n/a | n/a |")
            continue
        diff = max([abs(out["ap"] - ours["ap"])] + [abs(out["errors"][k] - v) for k, v in ours["errors"].items()])
        same &= diff <= 1e-4
        print(f"| {name} | {out['load']:.2f} | {out['decompose']:.2f} | {out['ap']:.2f} | {diff:.1e} |")
    print("\n" + " ".join(f"{k}={v:.3f}" for k, v in ours["errors"].items()))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
