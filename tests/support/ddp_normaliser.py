"""A test-only worker for the DDP loss-normaliser test: one fixed detector and batch, gradients per process.

``python ddp_normaliser.py OUT`` starts 2 gloo processes; each computes the FCOS loss gradient of
its half of :func:`fixed_batch` and averages the gradients over the processes as DDP does, once
with the positives count averaged across processes (``FCOSLoss`` as shipped) and once with the
per-process count. Rank 0 saves both to ``OUT``. The test compares them with one process's
gradient of the whole batch (:func:`gradients` on :func:`fixed_batch`).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from detkit.config import instantiate
from detkit.data import EvalTransform, ShapesReader, TransformedDataset, collate_detection
from detkit.models import Detector
from detkit.models.heads import fcos_loss

WORLD = 2
PER_PROCESS = 2

# GroupNorm throughout: a process's outputs do not depend on the rest of its batch (BatchNorm's would).
DETECTOR = {
    "class_path": "detkit.models.Detector",
    "init_args": {
        "backbone": {"class_path": "detkit.models.PlainConvBackbone", "init_args": {"widths": [8, 16, 32, 48, 64], "norm": "group"}},
        "neck": {"class_path": "detkit.models.FPN", "init_args": {"out_channels": 32, "extra_levels": 0}},
        "head": {"class_path": "detkit.models.FCOSHead", "init_args": {"num_convs": 1, "norm": "group"}},
    },
}


def fixed_detector() -> Detector:
    torch.manual_seed(0)
    return instantiate(Callable[[int], Detector], DETECTOR)(3)


def fixed_batch() -> tuple[Tensor, list[dict]]:
    """``WORLD * PER_PROCESS`` Shapes images at 96 px (their shape counts differ)."""
    data = TransformedDataset(ShapesReader(WORLD * PER_PROCESS, seed=11), EvalTransform(96))
    return collate_detection([data[i] for i in range(len(data))], pad_multiple=32)


def gradients(images: Tensor, targets: list[dict]) -> tuple[Tensor, dict[str, Tensor]]:
    """The fixed detector's loss on ``images`` and the gradient of every parameter."""
    detector = fixed_detector()
    loss = detector.loss(images, targets)["loss"]
    loss.backward()
    return loss.detach(), {name: p.grad.detach().clone() for name, p in detector.named_parameters()}


@contextlib.contextmanager
def per_process_normaliser():
    """FCOSLoss without the cross-process average: each process divides by its own positives."""
    shipped = fcos_loss.distributed_mean
    fcos_loss.distributed_mean = lambda value: value
    try:
        yield
    finally:
        fcos_loss.distributed_mean = shipped


def _rank(rank: int, init_file: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    images, targets = fixed_batch()
    share = slice(rank * PER_PROCESS, (rank + 1) * PER_PROCESS)
    results = {}
    for name, context in (("averaged", contextlib.nullcontext), ("per_process", per_process_normaliser)):
        with context():
            loss, grads = gradients(images[share], targets[share])
        for tensor in (loss, *grads.values()):  # DDP's gradient average (and the mean loss)
            dist.all_reduce(tensor)
            tensor /= WORLD
        results[name] = {"loss": loss, "grads": grads}
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_rank, args=(str(Path(tmp) / "init"), sys.argv[1]), nprocs=WORLD)
