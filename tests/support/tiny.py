"""Tiny shapes detectors, loaders and CPU trainers that tests train in seconds."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from detkit.data import EvalTransform, ShapesReader, TransformedDataset, collate_detection
from detkit.training.module import DetectionModule

#: BatchNorm backbone, GroupNorm FCOS head: 3 shape classes at 64-128 px.
TINY_DETECTOR = {
    "class_path": "detkit.models.Detector",
    "init_args": {
        "backbone": {"class_path": "detkit.models.PlainConvBackbone", "init_args": {"widths": [16, 32, 64, 96, 128]}},
        "neck": {"class_path": "detkit.models.FPN", "init_args": {"out_channels": 64, "extra_levels": 0}},
        "head": {"class_path": "detkit.models.FCOSHead", "init_args": {"num_convs": 2}},
    },
}
SHAPE_NAMES = ["circle", "square", "triangle"]


def tiny_module(seed: int = 0, lr: float = 0.003, optimizer: str = "torch.optim.AdamW", **overrides: Any) -> DetectionModule:
    """A :class:`DetectionModule` around :data:`TINY_DETECTOR` built from a config (as the CLI does)."""
    torch.manual_seed(seed)
    config = {
        "detector": TINY_DETECTOR,
        "num_classes": 3,
        "class_names": SHAPE_NAMES,
        "optimizer": {"class_path": optimizer, "init_args": {"lr": lr}},
        "warmup_steps": 0,
        **overrides,
    }
    return DetectionModule.from_config(config)


def shapes_loader(num_images: int = 4, batch_size: int = 2, size: int = 64, seed: int = 7) -> DataLoader:
    """Letterboxed shapes images in a fixed order (no augmentation): the same batches every epoch."""
    data = TransformedDataset(ShapesReader(num_images, seed=seed), EvalTransform(size))
    return DataLoader(data, batch_size=batch_size, collate_fn=collate_detection)


def cpu_trainer(root: Any, callbacks: tuple = (), **kwargs: Any) -> Trainer:
    """A quiet CPU Trainer writing under ``root`` (no logger, no progress bar, no sanity check)."""
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "default_root_dir": root,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        **kwargs,
    }
    return Trainer(callbacks=list(callbacks), **options)


def trained_tiny_shapes(steps: int = 1000, size: int = 96, max_shapes: int = 2) -> DetectionModule:
    """:func:`tiny_module` trained on 256 shapes images (up to ``max_shapes`` each) for ``steps``
    steps of batch 8 at ``size`` px: about a minute on 2 CPU cores, confident on most shapes."""
    from detkit.data import TrainTransform

    torch.manual_seed(0)
    data = TransformedDataset(
        ShapesReader(256, seed=11, max_shapes=max_shapes), TrainTransform(size, scale_range=(0.8, 1.2), augmentations=[])
    )
    loader = DataLoader(data, batch_size=8, shuffle=True, collate_fn=collate_detection)
    module = tiny_module(lr=0.004, warmup_steps=20)
    cpu_trainer(None, max_steps=steps, limit_val_batches=0, enable_checkpointing=False).fit(module, loader)
    return module.eval()


def write_checkpoint(module: DetectionModule, path: Any, input_size: int = 96, pad_multiple: int = 32) -> Any:
    """Save ``module`` as ``detkit fit`` would (weights + the ``detkit`` block) without a Trainer."""
    checkpoint: dict[str, Any] = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    checkpoint["detkit"].update(input_size=input_size, pad_multiple=pad_multiple)
    torch.save(checkpoint, path)
    return path


def assert_same_detections(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Same detections as sets: labels equal, boxes within 1e-3 relative, scores within 1e-4."""
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert len(got["scores"]) == len(want["scores"]), (got["scores"], want["scores"])
        unmatched = list(range(len(got["scores"])))
        for box, score, label in zip(want["boxes"], want["scores"], want["labels"]):
            match = [
                j for j in unmatched
                if got["labels"][j] == label and abs(float(got["scores"][j] - score)) <= 1e-4
                and torch.allclose(got["boxes"][j], box, rtol=1e-3, atol=1e-3)
            ]  # fmt: skip
            assert match, f"no match for {label} {float(score):.5f} {box.tolist()}"
            unmatched.remove(match[0])
        assert sorted(zip(got["labels"].tolist(), got["names"])) == sorted(zip(want["labels"].tolist(), want["names"]))
