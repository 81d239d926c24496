"""Write the TIDE fixture and tidecv 1.0.1's numbers for it and for cocoapi100 (``tide_reference.json``).

Run once, in a virtual environment of its own (tidecv needs numpy < 2; detkit is not needed)::

    python -m venv /tmp/tidevenv
    /tmp/tidevenv/bin/pip install tidecv==1.0.1 numpy==1.26.4 pycocotools==2.0.11 matplotlib==3.11.2 \
        opencv-python==4.11.0.86 seaborn==0.13.2 pandas==3.0.6 appdirs==1.4.4
    /tmp/tidevenv/bin/python tests/evaluation/data/make_tide_reference.py

It writes, next to itself: ``tide_fixture_gt.json`` / ``tide_fixture_dt.json`` (a small synthetic
COCO set, seeded, with every TIDE error type, crowds, score ties, equal-IoU ground truths, IoUs of
exactly 0.1 and 0.5, images without ground truth or detections, an image over 100 detections and
file order != id order) and ``tide_reference.json``: for the fixture and for
``../shared/data/cocoeval/cocoapi100`` (when present), tidecv's AP50, main and special dAP, error
counts, and per class (by category id) the AP and the dAP of each error fixed for that class alone
(``max(fixed - base, 0)`` for main errors, as tidecv clips the all-class ones; unclipped for the
special errors).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COCOAPI100 = HERE.parents[3] / "shared" / "data" / "cocoeval" / "cocoapi100"

# tidecv class -> detkit name, in detkit.evaluation.tide.ERROR_TYPES order
MAIN = ("ClassError", "classification"), ("BoxError", "localization"), ("OtherError", "both"), \
       ("DuplicateError", "duplicate"), ("BackgroundError", "background"), ("MissedError", "missed")  # fmt: skip


def make_fixture(seed: int = 0, num_images: int = 40) -> tuple[dict, list]:
    """A COCO ground-truth dict and results list that give every TIDE error type (stdlib random only)."""
    rng = random.Random(seed)
    classes = [1, 3, 4, 8]  # 9 has detections only, 12 neither
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 3, 4, 8, 9, 12)]
    ids = list(range(2, 2 * num_images + 2, 2))
    rng.shuffle(ids)
    images = [{"id": i, "width": 256, "height": 256, "file_name": f"{i}.jpg"} for i in ids]
    anns: list[dict] = []

    def add(image_id: int, cat: int, box: list[int], crowd: bool) -> None:
        x, y, w, h = box
        anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": box, "area": w * h,
                     "iscrowd": int(crowd), "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})  # fmt: skip

    for i in ids:
        if rng.random() < 0.1:
            continue  # no ground truth
        for _ in range(rng.randint(1, 6)):
            box = [rng.randint(0, 150), rng.randint(0, 150), rng.choice([10, 20, 40, 60, 80]), rng.choice([10, 20, 40, 60, 80])]
            add(i, rng.choice(classes), box, rng.random() < 0.08)
            if rng.random() < 0.1:  # the same box again: equal IoUs
                add(i, rng.choice(classes), list(box), False)
    dets = []
    for n_image, i in enumerate(ids):
        own = [a for a in anns if a["image_id"] == i]
        if rng.random() < 0.08:
            continue  # no detections
        for _ in range(110 if n_image == 3 else rng.randint(0, 14)):
            kind = rng.choice(["tp", "tp", "cls", "loc", "both", "dupe", "bkg"])
            if not own or kind == "bkg":
                box = [rng.randint(0, 200), rng.randint(0, 200), rng.randint(2, 60), rng.randint(2, 60)]
                cat = rng.choice(classes + [9])
            else:
                a = rng.choice(own)
                x, y, w, h = a["bbox"]
                box, cat = [x + rng.randint(-1, 1), y + rng.randint(-1, 1), w, h], a["category_id"]
                if kind in ("cls", "both"):
                    cat = rng.choice([c for c in classes + [9] if c != cat])
                if kind in ("loc", "both"):  # IoU 1/3, exactly 0.5 (twice), exactly 0.1, 1/4
                    box = rng.choice([[x + w // 2, y, w, h], [x, y, w, h // 2], [x, y, 2 * w, h], [x, y, w, h // 10],
                                      [x + w // 3, y + h // 3, w, h]])  # fmt: skip
            dets.append({"image_id": i, "category_id": cat, "bbox": [float(v) for v in box], "score": rng.randint(1, 20) / 20})
    return {"images": images, "annotations": anns, "categories": categories}, dets


def tidecv_numbers(gt_file: Path, dt_file: Path) -> dict:
    """tidecv's all-class and per-class numbers for a COCO ground truth and bbox results file."""
    from tidecv import TIDE, datasets
    from tidecv.errors import main_errors as E

    tide = TIDE()  # pos_threshold=0.5, background_threshold=0.1, bbox
    run = tide.evaluate(datasets.COCO(str(gt_file)), datasets.COCOResult(str(dt_file)), mode=TIDE.BOX, name="run")
    main, special = tide.get_main_errors()["run"], tide.get_special_errors()["run"]
    counts = run.count_errors()
    out = {"ap": run.ap, "errors": {}, "counts": {}, "categories": {}}
    fixes = {}
    for cls_name, name in MAIN:
        error_type = getattr(E, cls_name)
        out["errors"][name] = main[error_type.short_name]
        out["counts"][name] = counts[error_type]
        fixes[name] = run.fix_errors(lambda err, t=error_type: isinstance(err, t))
    out["errors"]["false_positive"] = special[E.FalsePositiveError.short_name]
    out["errors"]["false_negative"] = special[E.FalseNegativeError.short_name]
    fixes["false_positive"] = run.fix_errors(transform=E.FalsePositiveError.fix)
    fixes["false_negative"] = run.fix_errors(false_neg_dict=run.false_negatives)
    for k, obj in run.ap_data.objs.items():
        base = obj.get_ap()
        deltas = {name: fixed.objs[k].get_ap() - base for name, fixed in fixes.items()}
        deltas.update({name: max(deltas[name], 0.0) for _, name in MAIN})
        out["categories"][str(k)] = {"ap": base, "errors": deltas}
    return out


def main() -> None:
    import tidecv  # noqa: F401  (fail early outside the tidecv venv)
    from importlib.metadata import version

    gt, dt = make_fixture()
    gt_file, dt_file = HERE / "tide_fixture_gt.json", HERE / "tide_fixture_dt.json"
    gt_file.write_text(json.dumps(gt, separators=(",", ":")))
    dt_file.write_text(json.dumps(dt, separators=(",", ":")))
    reference = {"tidecv": version("tidecv"), "numpy": version("numpy"), "fixture": tidecv_numbers(gt_file, dt_file)}
    if COCOAPI100.is_dir():
        reference["cocoapi100"] = tidecv_numbers(COCOAPI100 / "instances_val2014_100.json",
                                                 COCOAPI100 / "instances_val2014_fakebbox100_results.json")  # fmt: skip
    else:
        print(f"{COCOAPI100} not found: cocoapi100 left out", file=sys.stderr)
    (HERE / "tide_reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
