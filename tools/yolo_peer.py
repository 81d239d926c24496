"""The Ultralytics YOLO side of ``tools/accuracy.py``: train, predict, time; runs in the ``bench`` environment.

Imports only ``ultralytics`` and ``torch`` (not detkit), so it can run in a separate environment
that has Ultralytics (``pip install -e .[bench]`` or a venv made with ``--system-site-packages``)::

    YOLO_OFFLINE=1 python -m tools.yolo_peer --data DIR/data.yaml --images DIR/images/test --out OUT

The model is built from ``yolo11n.yaml`` (shipped in the package: nothing is downloaded) and
trained by Ultralytics' own trainer and recipe, with ``pretrained=False``, ``amp=False`` and
``plots=False`` (and ``val=False``: it validates once, after the last epoch). Writes
``OUT/peer.json``: the training wall time, the predictions of the last (EMA) weights on every image
of ``--images`` (Ultralytics' default inference, ``conf=0.001``, ``max_det=100``) as xyxy boxes in
original pixels with scores and class indices, keyed by file stem, and the CPU latency at batch 1
(inference + NMS on one square ``imgsz`` input, the median of ``--runs``) and GFLOPs of that input.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def predict_each(images: list[Path], predict: Callable[[str], list[Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One record per image (``stem``, xyxy ``boxes`` in original pixels, ``scores``, ``classes``) from
    ``predict(path) -> [result]``, and the names of the images it returned no result for.

    Ultralytics returns no result for an image it cannot read (it prints "Image Read Error"; a JPEG
    missing its last bytes is one, which detkit reads): such an image is scored as having no
    detections, and named, rather than failing the whole run."""
    records, unreadable = [], []
    for path in images:
        results = predict(str(path))
        if not results:
            unreadable.append(path.name)
            records.append({"stem": path.stem, "boxes": [], "scores": [], "classes": []})
            continue
        if len(results) != 1:
            raise RuntimeError(f"Ultralytics returned {len(results)} results for one image {path}")
        boxes = results[0].boxes
        records.append({
            "stem": path.stem,
            "boxes": boxes.xyxy.tolist(),  # original pixels
            "scores": boxes.conf.tolist(),
            "classes": [int(c) for c in boxes.cls.tolist()],
        })  # fmt: skip
    return records, unreadable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="Ultralytics data yaml (train / val splits)")
    parser.add_argument("--images", type=Path, required=True, help="folder of the images to predict on")
    parser.add_argument("--out", type=Path, required=True, help="folder for Ultralytics' run and peer.json")
    parser.add_argument("--model", default="yolo11n.yaml", help="model yaml (built from scratch)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--max-det", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20, help="timed predictions for the latency")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of the latency (0: torch's default)")
    args = parser.parse_args()
    os.environ.setdefault("YOLO_OFFLINE", "1")

    import torch
    import ultralytics
    from torch.utils.flop_counter import FlopCounterMode
    from ultralytics import YOLO

    args.out.mkdir(parents=True, exist_ok=True)
    model = YOLO(args.model)
    start = time.perf_counter()
    model.train(
        data=str(args.data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=args.seed,
        device="cpu", pretrained=False, amp=False, plots=False, val=False,
        project=str(args.out.resolve()), name="train", exist_ok=True, verbose=False,
    )  # fmt: skip
    train_s = time.perf_counter() - start
    weights = Path(model.trainer.save_dir) / "weights" / "last.pt"

    trained = YOLO(str(weights))
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    predict = lambda path: trained.predict(path, imgsz=args.imgsz, conf=args.conf, max_det=args.max_det,  # noqa: E731
                                           device="cpu", verbose=False)  # fmt: skip
    predictions, unreadable = predict_each(images, predict)
    if unreadable:
        print(f"yolo_peer: Ultralytics could not read {len(unreadable)} of {len(images)} test images; they are scored "
              f"as having no detections: {', '.join(unreadable)}", flush=True)  # fmt: skip

    # Latency: inference + NMS of one image letterboxed to a square imgsz input (rect=False), batch 1.
    speeds = []
    torch.set_num_threads(args.threads or torch.get_num_threads())
    readable = next((p for p in images if p.name not in unreadable), None)
    if readable is None:
        raise SystemExit(f"yolo_peer: Ultralytics could read none of the {len(images)} test images in {args.images}")
    for _ in range(3 + args.runs):
        [result] = trained.predict(str(readable), imgsz=args.imgsz, conf=args.conf, max_det=args.max_det,
                                   device="cpu", rect=False, verbose=False)  # fmt: skip
        speeds.append(result.speed["inference"] + result.speed["postprocess"])
    net = trained.predictor.model.model  # the fused network predict ran
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, args.imgsz, args.imgsz))
    row = {
        "train_s": train_s,
        "epochs": args.epochs,
        "weights": str(weights),
        "predictions": predictions,
        "unreadable": unreadable,
        "latency_ms": statistics.median(speeds[3:]),
        "gflops": counter.get_total_flops() / 1e9,  # a multiply-add counts as 2 FLOPs
        "input": f"{args.imgsz}x{args.imgsz}",
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
    }
    (args.out / "peer.json").write_text(json.dumps(row))


if __name__ == "__main__":
    main()
