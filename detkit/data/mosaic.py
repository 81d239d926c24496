"""Mosaic (four images in one) as a dataset wrapper, and the training sampler that turns it off for the last epochs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from detkit.data.mixing import Switchable
from detkit.data.sampler import EpochShuffle
from detkit.ops.letterbox import fit_longest_side, resize_image
from detkit.schedule import run_progress

__all__ = ["mosaic", "MosaicDataset", "MosaicSchedule"]

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
    shared memory: setting it in the main process (see :class:`MosaicSchedule`) reaches running workers.
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


class MosaicSchedule(EpochShuffle):
    """The training order of :class:`~detkit.data.sampler.EpochShuffle` that, at the start of each
    epoch, switches mosaic off for the end of the run.

    It runs in the main process at the start of every epoch (before any index of that epoch reaches
    a worker) and sets ``mosaic.active``. ``off_share`` turns mosaic off for the final share of the
    run, measured as :func:`~detkit.schedule.run_progress` does (steps, or the share of
    ``trainer.max_time`` used, whichever is further), switching at the epoch boundary nearest to
    ``1 - off_share``; so it holds for runs of any length or time budget. ``off_last_epochs`` instead
    counts final epochs of ``trainer.max_epochs``. Without a trainer or a run end, mosaic stays on.
    """

    def __init__(
        self,
        mosaic_dataset: Switchable | Sequence[Switchable],
        off_last_epochs: int,
        trainer: Callable[[], Any],
        seed: int = 0,
        off_share: float = 0.0,
    ) -> None:
        """Args:
        mosaic_dataset: The wrapped training data (the sampler's data source), or several wrappers of
            the same data (mosaic, mixup, copy-paste) switched together.
        off_last_epochs: Number of final epochs without mosaic (0: use ``off_share``).
        trainer: Returns the Lightning trainer (or ``None``).
        seed: Seed of the shuffled order.
        off_share: Final share of the run (0..1) without mosaic.
        """
        switches = [mosaic_dataset] if isinstance(mosaic_dataset, Switchable) else list(mosaic_dataset)
        super().__init__(len(switches[0]), seed)
        if not 0 <= off_share <= 1:
            raise ValueError(f"mosaic off share must be in [0, 1], got {off_share}")
        self.switches = switches
        self.off_last_epochs = off_last_epochs
        self.off_share = off_share
        self.trainer = trainer

    def __iter__(self):
        trainer = self.trainer()
        if trainer is not None and self.off_share > 0:
            progress = run_progress(trainer)
            epoch = getattr(trainer, "current_epoch", 0)
            per_epoch = progress / epoch if epoch > 0 else 0.0  # the share one epoch took so far
            self._switch(progress + per_epoch / 2 < 1 - self.off_share)
        elif self.off_last_epochs > 0:
            max_epochs = getattr(trainer, "max_epochs", None)
            if max_epochs is not None and max_epochs > 0:
                self._switch(trainer.current_epoch < max_epochs - self.off_last_epochs)
        return super().__iter__()

    def _switch(self, active: bool) -> None:
        for switch in self.switches:
            switch.active = active
