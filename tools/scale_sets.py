"""Synthetic data sets at COCO scale for ``tools.bench_scale``: instances jsons, image folders of hard links, evaluation jsons.

Nothing here holds more than one set's json in memory: images are hard links to a few real (small,
generated) JPEG files, and an evaluation ground truth / results pair is written a block of images
at a time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COCO_CATEGORY_IDS", "IMAGE_SIZES", "LINKS_PER_FILE", "TRAIN2017_BOXES", "TRAIN2017_IMAGES",
    "eval_set", "link_images", "synthetic_coco", "write_dataset", "write_eval_set", "write_folder",
]  # fmt: skip

REPO = Path(__file__).resolve().parents[1]
# COCO train2017's counts and its 80 category ids (1..90 with gaps)
TRAIN2017_IMAGES, TRAIN2017_BOXES = 118_287, 860_001
COCO_CATEGORY_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]
# (width, height) of the synthetic images and how often each occurs
IMAGE_SIZES = [((640, 480), 0.55), ((480, 640), 0.15), ((640, 427), 0.2), ((427, 640), 0.05), ((500, 375), 0.05)]


#: Hard links made to one file (ext4 allows 65,000 per inode; the rest is left for others).
LINKS_PER_FILE = 60_000


def _source_image(folder: Path, width: int, height: int, k: int) -> Path:
    """A real JPEG of ``width`` x ``height`` (noise with a flat square to find), the ``k``-th of that size."""
    path = folder / f"source_{width}x{height}_{k}.jpg"
    if not path.is_file():
        from PIL import Image

        rng = np.random.default_rng([width, height, k])
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        pixels[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = rng.integers(0, 256, 3, dtype=np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
    return path


def link_images(folder: Path, names: list[str], sizes: list[tuple[int, int]]) -> None:
    """Make ``folder/name`` for each of ``names``: a hard link to a real JPEG of its ``(width, height)``.

    One source file takes ``LINKS_PER_FILE`` links (ext4 allows 65,000 an inode); sources live in
    ``folder``'s sibling ``sources/``. Names that exist already are kept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    used: dict[tuple[int, int], int] = {}
    for name, (width, height) in zip(names, sizes):
        k = used.get((width, height), 0)
        used[(width, height)] = k + 1
        path = folder / name
        if not path.exists():
            os.link(_source_image(folder.parent / "sources", width, height, k // LINKS_PER_FILE), path)


def write_eval_set(
    folder: Path, num_images: int, dets_per_image: int = 100, num_classes: int = 80, seed: int = 0, block: int = 2000
) -> tuple[Path, Path]:
    """``(gt.json, dt.json)`` of ``num_images`` images, written ``block`` images at a time.

    As ``tools/bench_eval.py``'s set: 320-640 x 240-480 images with 1-15 objects (1 % crowds,
    area below the box's as for masks), non-contiguous category ids, ``dets_per_image``
    detections an image: half near an object (80 % of the right class), half random.
    """
    import orjson

    rng = np.random.default_rng(seed)
    category_ids = np.arange(1, num_classes + 1) + (np.arange(num_classes) // 10)
    folder.mkdir(parents=True, exist_ok=True)
    gt_path, dt_path = folder / "gt.json", folder / "dt.json"
    gt_images, gt_annotations = folder / "gt_images.part", folder / "gt_annotations.part"
    next_ann = 1
    with open(dt_path, "wb") as dt, open(gt_images, "wb") as images_out, open(gt_annotations, "wb") as anns_out:
        dt.write(b"[")
        for first in range(1, num_images + 1, block):
            ids = np.arange(first, min(first + block, num_images + 1))
            n = len(ids)
            width, height = rng.integers(320, 641, n), rng.integers(240, 481, n)
            images = [{"id": int(i), "width": int(w), "height": int(h), "file_name": f"{i:012d}.jpg"}
                      for i, w, h in zip(ids, width, height)]  # fmt: skip
            images_out.write((b"," if first > 1 else b"") + orjson.dumps(images)[1:-1])
            # objects: 1-15 an image
            counts = rng.integers(1, 16, n)
            owner = np.repeat(np.arange(n), counts)
            size = np.stack([width[owner], height[owner]], axis=1).astype(np.float64)
            wh = np.minimum(np.exp(rng.uniform(np.log(6), np.log(300), (len(owner), 2))), size - 1).round(2)
            xy = (rng.uniform(0, 1, (len(owner), 2)) * (size - wh)).round(2)
            cats = category_ids[rng.integers(0, num_classes, len(owner))]
            crowd = (rng.random(len(owner)) < 0.01).astype(int)
            area = (wh[:, 0] * wh[:, 1] * rng.uniform(0.5, 0.9, len(owner))).round(2)
            boxes = np.concatenate((xy, wh), axis=1)
            anns = [{"id": next_ann + k, "image_id": int(ids[o]), "category_id": int(c), "bbox": b, "area": a, "iscrowd": int(z)}
                    for k, (o, c, b, a, z) in enumerate(zip(owner, cats, boxes.tolist(), area.tolist(), crowd))]  # fmt: skip
            next_ann += len(anns)
            anns_out.write((b"," if first > 1 else b"") + orjson.dumps(anns)[1:-1])
            # detections: half near an object of the same image, half anywhere
            starts = np.cumsum(counts) - counts
            near, far = dets_per_image // 2, dets_per_image - dets_per_image // 2
            pick = (starts[:, None] + (rng.random((n, near)) * counts[:, None]).astype(int)).reshape(-1)
            jitter = 1 + rng.normal(0, 0.15, (len(pick), 4)) * [0.3, 0.3, 1, 1]
            near_boxes = np.concatenate((xy[pick] + wh[pick] * (jitter[:, :2] - 1), wh[pick] * jitter[:, 2:]), axis=1)
            near_cats = np.where(rng.random(len(pick)) < 0.8, cats[pick], category_ids[rng.integers(0, num_classes, len(pick))])
            far_owner = np.repeat(np.arange(n), far)
            far_wh = np.exp(rng.uniform(np.log(6), np.log(300), (len(far_owner), 2)))
            far_size = np.stack([width[far_owner], height[far_owner]], axis=1)
            far_xy = rng.uniform(0, 1, (len(far_owner), 2)) * np.maximum(far_size - np.minimum(far_wh, 300), 1)
            det_image = np.concatenate((np.repeat(ids, near), ids[far_owner]))
            det_boxes = np.concatenate((near_boxes, np.concatenate((far_xy, far_wh), axis=1))).clip(min=0.5).round(2)
            det_cats = np.concatenate((near_cats, category_ids[rng.integers(0, num_classes, len(far_owner))]))
            scores = np.concatenate((rng.uniform(0.2, 1.0, len(pick)), rng.uniform(0.0, 0.6, len(far_owner)))).round(3)
            order = np.argsort(det_image, kind="stable")  # image by image, as a detector writes them
            dets = [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in zip(
                det_image[order].tolist(), det_cats[order].tolist(), det_boxes[order].tolist(), scores[order].tolist())]  # fmt: skip
            dt.write((b"," if first > 1 else b"") + orjson.dumps(dets)[1:-1])
        dt.write(b"]")
    categories = [{"id": int(c), "name": f"class_{c}", "supercategory": "thing"} for c in category_ids]
    with open(gt_path, "wb") as gt:
        gt.write(b'{"images":[')
        with open(gt_images, "rb") as part:
            while chunk := part.read(2**24):
                gt.write(chunk)
        gt.write(b'],"annotations":[')
        with open(gt_annotations, "rb") as part:
            while chunk := part.read(2**24):
                gt.write(chunk)
        gt.write(b'],"categories":' + orjson.dumps(categories) + b"}")
    gt_images.unlink()
    gt_annotations.unlink()
    return gt_path, dt_path


def synthetic_coco(num_images: int, seed: int, scale: float = 1.0) -> dict[str, Any]:
    """A COCO instances dict with ``num_images`` images and train2017's boxes per image (boxes only),
    the images ``IMAGE_SIZES`` times ``scale``.

    About 1% background images, 1% crowd boxes, 0.1% boxes reaching past the image (clipped by
    detkit) and 0.01% of zero width (dropped); annotations in random image order, as in COCO.
    """
    rng = np.random.default_rng(seed)
    num_boxes = round(num_images * TRAIN2017_BOXES / TRAIN2017_IMAGES)
    image_ids = rng.choice(np.arange(1, 600_000), size=num_images, replace=False)
    choices = np.round(np.array([s for s, _ in IMAGE_SIZES]) * scale).astype(np.int64)
    sizes = choices[rng.choice(len(IMAGE_SIZES), num_images, p=[p for _, p in IMAGE_SIZES])]
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


def dataset_paths(workdir: Path, num_images: int, seed: int, scale: float = 1.0) -> tuple[Path, Path, Path]:
    """``(images_dir, ann_file, marker)`` of the synthetic dataset in ``workdir`` (``marker``: it is complete)."""
    folder = workdir / (f"coco_{num_images}_seed{seed}" + (f"_x{scale:g}" if scale != 1.0 else ""))
    return folder / "images", folder / "instances.json", folder / ".complete"


def write_dataset(workdir: Path, num_images: int, seed: int, scale: float = 1.0) -> tuple[Path, Path]:
    """``(images_dir, ann_file)`` of the synthetic dataset under ``workdir``, written once: empty image files
    (enough to parse) at ``scale`` 1, hard links to real JPEGs of each image's size (:func:`link_images`) otherwise.

    Written in a child process: a process's ``ru_maxrss`` starts from the peak of the process it
    was started from (Linux carries it over fork and exec), so the process that starts the
    measured ones must stay small.
    """
    images_dir, ann_file, done = dataset_paths(workdir, num_images, seed, scale)
    if not done.is_file():
        _in_child("_write", workdir, num_images, seed, scale)
    return images_dir, ann_file


def _in_child(name: str, *args: Any) -> None:
    """``tools.scale_sets.<name>(*args)`` in a child process, its arguments as strings."""
    script = "import sys; from tools import scale_sets; getattr(scale_sets, sys.argv[1])(*sys.argv[2:])"
    subprocess.run([sys.executable, "-c", script, name, *map(str, args)], cwd=REPO, check=True)


def _write(workdir: str, num_images: str, seed: str, scale: str) -> None:
    import orjson

    num_images, seed, scale = int(num_images), int(seed), float(scale)
    images_dir, ann_file, done = dataset_paths(Path(workdir), num_images, seed, scale)
    images_dir.mkdir(parents=True, exist_ok=True)
    data = synthetic_coco(num_images, seed, scale)
    ann_file.write_bytes(orjson.dumps(data))
    names = [image["file_name"] for image in data["images"]]
    if scale == 1.0:
        for name in names:
            (images_dir / name).touch()
    else:
        link_images(images_dir, names, [(image["width"], image["height"]) for image in data["images"]])
    done.touch()


def write_folder(workdir: Path, num_images: int) -> Path:
    """A folder of ``num_images`` hard-linked 64 x 48 JPEGs (``000000000001.jpg``, ...) under ``workdir``,
    made once, in a child process (see :func:`write_dataset`)."""
    folder = workdir / f"folder_{num_images}" / "images"
    done = folder.parent / ".complete"
    if not done.is_file():
        _in_child("_link_folder", folder, num_images)
        done.touch()
    return folder


def _link_folder(folder: str, num_images: str) -> None:
    count = int(num_images)
    link_images(Path(folder), [f"{i:012d}.jpg" for i in range(1, count + 1)], [(64, 48)] * count)


def eval_set(workdir: Path, num_images: int, seed: int = 0) -> tuple[Path, Path]:
    """``(gt.json, dt.json)`` of :func:`write_eval_set` under ``workdir``, made once, in a child process."""
    folder = workdir / f"eval_{num_images}_seed{seed}"
    if not (folder / ".complete").is_file():
        _in_child("_write_eval", folder, num_images, seed)
        (folder / ".complete").touch()
    return folder / "gt.json", folder / "dt.json"


def _write_eval(folder: str, num_images: str, seed: str) -> None:
    write_eval_set(Path(folder), int(num_images), seed=int(seed))
