"""Loader throughput per worker: detkit (PIL decode + albumentations + collate) vs the same steps in torchvision.transforms.v2.

    python -m tools.bench_data [--root ../shared/data/raccoon] [--size 640] [--epochs 2]

Both pipelines decode each JPEG, resize the longest side to ``size`` times a random factor in
[0.6, 1.4], pad/random-crop to ``size x size``, flip horizontally (p=0.5), jitter brightness /
contrast / saturation 0.2 and hue 0.05 (p=0.8), convert to float in [0, 1], keep boxes in step
and collate batches with :func:`detkit.data.collate_detection`. One process with one thread for
torch and OpenCV, as in a DataLoader worker; prints images/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import torch
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

from detkit.data import TrainTransform, TransformedDataset, VocReader, collate_detection

REPO = Path(__file__).resolve().parents[1]


class TorchvisionDataset(torch.utils.data.Dataset):
    """The same files and boxes through ``torchvision.io.decode_image`` and a ``transforms.v2`` pipeline."""

    def __init__(self, voc: VocReader, size: int) -> None:
        self.voc = voc
        self.size = size
        self.transforms = v2.Compose(
            [
                v2.RandomHorizontalFlip(p=0.5),
                v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)], p=0.8),
                v2.ToDtype(torch.float32, scale=True),
                v2.SanitizeBoundingBoxes(min_size=1.0),
            ]
        )
        self.crop = v2.RandomCrop(size, pad_if_needed=True)

    def __len__(self) -> int:
        return len(self.voc)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        image = decode_image(str(self.voc.images_dir / self.voc.files[index]), mode=ImageReadMode.RGB)
        target = self.voc.target(index)
        h, w = image.shape[-2:]
        boxes = tv_tensors.BoundingBoxes(torch.from_numpy(target["boxes"]), format="XYXY", canvas_size=(h, w))
        scale = float(torch.empty(()).uniform_(0.6, 1.4))
        long_side = max(1, round(self.size * scale))
        image, boxes = v2.functional.resize(image, size=None, max_size=long_side), v2.functional.resize(boxes, size=None, max_size=long_side)
        image, boxes = self.crop(image, boxes)
        out = {"boxes": boxes, "labels": torch.from_numpy(target["labels"])}
        image, out = self.transforms(image, out)
        return image, {"boxes": out["boxes"].as_subclass(torch.Tensor), "labels": out["labels"]}


def _throughput(dataset: torch.utils.data.Dataset, batch_size: int, epochs: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                                         collate_fn=collate_detection)  # fmt: skip
    next(iter(loader))  # warm-up
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for images, _ in loader:
            count += images.shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO / ".." / "shared" / "data" / "raccoon")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    torch.manual_seed(0)
    voc = VocReader(str(args.root / "images"), str(args.root / "annotations"))
    voc.load()
    detkit = TransformedDataset(voc, TrainTransform(args.size))
    results = {}
    for name, dataset in (("detkit (albumentations)", detkit), ("torchvision.transforms.v2", TorchvisionDataset(voc, args.size))):
        results[name] = _throughput(dataset, args.batch_size, args.epochs)
    print(f"{len(voc)} images of {args.root.resolve().name} at {args.size} px, batch {args.batch_size}, "
          f"{args.epochs} epochs, 1 process / 1 thread (one worker)")  # fmt: skip
    for name, rate in results.items():
        print(f"  {name:<28} {rate:8.1f} images/s")
    ratio = results["detkit (albumentations)"] / results["torchvision.transforms.v2"]
    print(f"  ratio detkit / torchvision   {ratio:8.2f}")


if __name__ == "__main__":
    main()
