"""Mosaic (four images in one) as a dataset wrapper, and the callback that turns it off for the end of a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import Dataset

from detkit.data.mixing import Switchable
from detkit.ops.letterbox import fit_longest_side, resize_image
from detkit.schedule import run_progress

__all__ = ["mosaic", "MosaicDataset", "MosaicSwitch"]

_FIELDS = ("labels", "iscrowd", "area")


def mosaic(
    items: list[tuple[np.ndarray, dict[str, Any]]], size: int, center: tuple[int, int], min_visibility: float = 0.2
) -> tuple[np.ndarray, dict[str, Any]]:
    """Tile four ``(image uint8 [H, W, 3], target)`` items around ``center`` on a ``size x size`` canvas.

    Each image is resized so its longest side is ``size`` (:func:`~detkit.ops.letterbox.fit_longest_side`,
    :func:`~detkit.ops.letterbox.resize_image`) and placed with its
    bottom-right (item 0), bottom-left (1), top-right (2) or top-left (3) corner at ``center = (cx, cy)``;
    what falls outside the canvas is cut, the rest of the canvas is 0. Boxes are scaled, shifted and
    clipped to the canvas; a box is kept if at least 1 px wide and high and ``min_visibility`` of its
    resized area is on the canvas. ``area`` is scaled with the image; ``image_id`` is item 0's.
    """
    if len(items) != 4:
        raise ValueError(f"mosaic needs 4 items, got {len(items)}")
    cx, cy = center
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    boxes, fields = [], {k: [] for k in _FIELDS}
    for k, (image, target) in enumerate(items):
        (nh, nw), (sx, sy) = fit_longest_side(*image.shape[:2], size)
        resized = resize_image(image, nh, nw)
        x0 = cx - nw if k in (0, 2) else cx
        y0 = cy - nh if k in (0, 1) else cy
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + nw, size), min(y0 + nh, size)  # on the canvas
        if cx1 > cx0 and cy1 > cy0:
            canvas[cy0:cy1, cx0:cx1] = resized[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        factor = np.array([sx, sy, sx, sy])
        b = np.asarray(target["boxes"], dtype=np.float64).reshape(-1, 4) * factor + np.array([x0, y0, x0, y0])
        clipped = np.clip(b, 0, size)
        full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        wh = clipped[:, 2:] - clipped[:, :2]
        keep = (wh >= 1).all(axis=1) & (wh[:, 0] * wh[:, 1] >= min_visibility * full)
        boxes.append(clipped[keep])
        for key in _FIELDS:
            values = np.asarray(target[key]).reshape(-1)[keep]
            fields[key].append(values * sx * sy if key == "area" else values)
    result = {
        "boxes": np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
        "labels": np.concatenate(fields["labels"]).astype(np.int64),
        "iscrowd": np.concatenate(fields["iscrowd"]).astype(np.int64),
        "area": np.concatenate(fields["area"]).astype(np.float32),
        "image_id": items[0][1]["image_id"],
        "file_name": "mosaic:" + "+".join(str(t["file_name"]) for _, t in items),
    }
    return canvas, result


class MosaicDataset(Switchable):
    """With probability ``prob``, item ``i`` becomes a :func:`mosaic` of item ``i`` and three random others.

    The mosaic centre is uniform in ``[size/4, 3*size/4]`` on both axes. Randomness comes from torch,
    so ``seed_everything`` makes it repeatable and DataLoader workers differ. ``active`` lives in
    shared memory: setting it in the main process (see :class:`MosaicSwitch`) reaches running workers.
    """

    def __init__(self, dataset: Dataset, size: int, prob: float = 0.5, min_visibility: float = 0.2) -> None:
        """Wrap ``dataset``.

        Args:
            dataset: Raw detection dataset of ``(image uint8 [H, W, 3], target)`` items.
            size: Side of the square mosaic canvas (the training input size).
            prob: Probability that an item is a mosaic.
            min_visibility: Fraction of a box's area that must stay on the canvas for it to be kept.
        """
        super().__init__(dataset, prob, "mosaic")
        if size < 4:
            raise ValueError(f"mosaic size must be >= 4, got {size}")
        self.size = size
        self.min_visibility = min_visibility

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, Any]]:
        if not self.active or self.prob == 0 or torch.rand(()).item() >= self.prob:
            return self.dataset[index]
        others = torch.randint(len(self), (3,)).tolist()
        low, high = self.size // 4, 3 * self.size // 4
        cx, cy = torch.randint(low, high + 1, (2,)).tolist()
        items = [self.dataset[k] for k in (index, *others)]
        return mosaic(items, self.size, (cx, cy), self.min_visibility)


class MosaicSwitch(Callback):
    """Turns mosaic, and the mixup / copy-paste wrappers switched with it, off for the end of a run.

    ``off_share`` turns them off for the final share of the run, measured as
    :func:`~detkit.schedule.run_progress` does (steps, or the share of ``trainer.max_time`` used,
    whichever is further), switching at the epoch boundary nearest to ``1 - off_share``; so it holds
    for runs of any length or time budget. ``off_last_epochs`` instead counts final epochs of
    ``trainer.max_epochs``. A run without an end keeps them on.

    When: at ``on_train_epoch_start`` of every epoch, in the main process of every rank. Each
    wrapper keeps its switch in shared memory (:class:`~detkit.data.mixing.Switchable`), so the
    DataLoader's workers, persistent ones included, see it. Lightning starts an epoch's loader
    iteration (and with it the workers' first ``prefetch_factor * num_workers`` batches) after that
    hook, except for the first epoch of a ``fit``, whose loader is started before any epoch hook
    (when ``configure_optimizers`` reads ``trainer.estimated_stepping_batches``, or just before
    ``on_train_start``). So :meth:`setup` already sets a new run's first-epoch value, and a resumed
    run starts from the value in force when its checkpoint was written (:meth:`state_dict`, restored
    before the loader starts; also the value of an epoch resumed mid-way, which gets no
    ``on_train_epoch_start``). Only where the rule flips exactly at a resumed run's first epoch do
    that epoch's first prefetched batches still carry the saved value.

    Under DDP every rank decides alike: the step count is the same on every rank and
    :func:`~detkit.schedule.run_progress` broadcasts rank 0's clock (one broadcast per epoch when
    ``max_time`` is set, none per step).
    """

    def __init__(self, switches: Sequence[Switchable], off_share: float = 0.0, off_last_epochs: int = 0) -> None:
        """Args:
        switches: The training wrappers to switch together; read at each switch, so a list filled
            later works (the data module passes its ``switches``, which its ``setup`` fills).
        off_share: Final share of the run (0..1) without them; exclusive with ``off_last_epochs``.
        off_last_epochs: Number of final epochs (of ``trainer.max_epochs``) without them.
        """
        if not 0 <= off_share <= 1:
            raise ValueError(f"mosaic off share must be in [0, 1], got {off_share}")
        if off_last_epochs < 0:
            raise ValueError(f"mosaic off_last_epochs must be >= 0, got {off_last_epochs}")
        if off_share > 0 and off_last_epochs > 0:
            raise ValueError("give off_share or off_last_epochs, not both")
        self.switches = switches
        self.off_share = float(off_share)
        self.off_last_epochs = int(off_last_epochs)
        self.active: bool | None = None  # the value last set; None before the first switch

    def decide(self, progress: float, epoch: int, max_epochs: int | None) -> bool | None:
        """Whether the wrappers are on for epoch ``epoch`` (0-based) that starts at ``progress`` of
        the run (``None``: no rule applies, leave them as they are)."""
        if self.off_share > 0:
            per_epoch = progress / epoch if epoch > 0 else 0.0  # the share one epoch took so far
            return progress + per_epoch / 2 < 1 - self.off_share
        if self.off_last_epochs > 0 and max_epochs is not None and max_epochs > 0:
            return epoch < max_epochs - self.off_last_epochs
        return None

    def switch(self, active: bool | None) -> None:
        """Set every wrapper's ``active`` (nothing for ``None``)."""
        if active is None:
            return
        self.active = bool(active)
        for wrapper in self.switches:
            wrapper.active = self.active

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # A new run's first epoch, before its loader starts (progress is 0: nothing is measured yet,
        # and measuring would start the loader).
        if stage == "fit":
            self.switch(self.decide(0.0, 0, trainer.max_epochs))

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        progress = run_progress(trainer) if self.off_share > 0 else 0.0
        self.switch(self.decide(progress, trainer.current_epoch, trainer.max_epochs))

    def state_dict(self) -> dict[str, Any]:
        return {"active": self.active}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.switch(state_dict.get("active"))
