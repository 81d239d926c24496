"""Augmentations across images as dataset wrappers: MixUp (two images blended) and copy-paste (boxes pasted as crops)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from detkit.ops.letterbox import fit_longest_side, resize_image

__all__ = ["Switchable", "MixUpDataset", "CopyPasteDataset", "mixup", "copy_paste"]

Item = tuple[np.ndarray, dict[str, Any]]
_FIELDS = ("boxes", "labels", "iscrowd", "area")


class Switchable(Dataset):
    """A dataset wrapper with an ``active`` switch in shared memory: set in the main process (by
    :class:`~detkit.data.mosaic.MosaicSwitch` at an epoch start), it reaches running workers, persistent
    ones included: they hold the same shared tensor."""

    def __init__(self, dataset: Dataset, prob: float, name: str) -> None:
        if not 0 <= prob <= 1:
            raise ValueError(f"{name} prob must be in [0, 1], got {prob}")
        self.dataset = dataset
        self.prob = prob
        self._active = torch.ones(1, dtype=torch.bool).share_memory_()

    @property
    def active(self) -> bool:
        """Whether the wrapper changes items at all."""
        return bool(self._active.item())

    @active.setter
    def active(self, value: bool) -> None:
        self._active.fill_(bool(value))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _draw(self) -> bool:
        return self.active and self.prob > 0 and torch.rand(()).item() < self.prob


def _on_canvas(item: Item, size: int) -> Item:
    """``item`` resized so its longest side is ``size``, at the top-left of a ``size x size`` zero canvas."""
    image, target = item
    (nh, nw), (sx, sy) = fit_longest_side(*image.shape[:2], size)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:nh, :nw] = resize_image(image, nh, nw)
    boxes = np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
    area = np.asarray(target["area"], dtype=np.float32).reshape(-1) * sx * sy
    return canvas, {**target, "boxes": boxes, "area": area}


def _concat(targets: list[dict[str, Any]], keep: list[np.ndarray] | None = None) -> dict[str, Any]:
    keep = keep or [np.ones(len(np.asarray(t["boxes"]).reshape(-1, 4)), bool) for t in targets]
    out = {**targets[0]}
    for key in _FIELDS:
        parts = [np.asarray(t[key]).reshape((-1, 4) if key == "boxes" else (-1,))[k] for t, k in zip(targets, keep)]
        out[key] = np.concatenate(parts).astype(np.float32 if key in ("boxes", "area") else np.int64)
    out["boxes"] = out["boxes"].reshape(-1, 4)
    return out


def mixup(first: Item, second: Item, size: int, weight: float = 0.5) -> Item:
    """Blend two items on a ``size x size`` canvas: ``weight * first + (1 - weight) * second`` (each
    resized to fit and placed top-left); the boxes of both are kept (Zhang et al. 2018, as used
    for detection by YOLOX / YOLOv5). ``image_id`` is the first item's."""
    (a, ta), (b, tb) = _on_canvas(first, size), _on_canvas(second, size)
    image = (weight * a.astype(np.float32) + (1 - weight) * b.astype(np.float32)).round().astype(np.uint8)
    target = _concat([ta, tb])
    target["file_name"] = f"mixup:{ta['file_name']}+{tb['file_name']}"
    return image, target


def _ioa(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``[N, M]``: the share of each of ``boxes``' area covered by each of ``others``."""
    if len(boxes) == 0 or len(others) == 0:
        return np.zeros((len(boxes), len(others)), np.float32)
    lt = np.maximum(boxes[:, None, :2], others[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], others[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = np.clip(boxes[:, 2:] - boxes[:, :2], 1e-6, None).prod(-1)
    return inter / area[:, None]


def copy_paste(target_item: Item, source_item: Item, generator: torch.Generator | None = None,
               max_objects: int = 8, max_overlap: float = 0.3) -> Item:  # fmt: skip
    """Paste up to ``max_objects`` boxes of ``source_item`` (their rectangular crops, resized to the
    target's scale) at random places of ``target_item``. A crop is pasted only where it covers at most
    ``max_overlap`` of every box already there (the image's own and those pasted before it), so
    no labelled object disappears under a crop. Crowd boxes are not pasted. Without masks, each
    crop carries its background with it (the "boxes as pasted crops" variant of Ghiasi et al. 2021),
    and with it any part of a neighbouring source object inside the box, which stays unlabelled: on
    densely packed data (cells) keep ``copy_paste_prob`` low or off."""
    image, target = target_item
    source, src_target = source_item
    image = image.copy()
    height, width = image.shape[:2]
    src_boxes = np.asarray(src_target["boxes"], dtype=np.float32).reshape(-1, 4)
    candidates = [k for k in range(len(src_boxes)) if not np.asarray(src_target["iscrowd"]).reshape(-1)[k]]
    order = torch.randperm(len(candidates), generator=generator).tolist()[:max_objects]
    # The source scaled to the target's longest side, so objects keep a plausible size.
    scale = max(height, width) / max(source.shape[:2])
    placed = np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4)
    pasted_boxes, pasted_index = [], []
    for k in (candidates[i] for i in order):
        x1, y1, x2, y2 = src_boxes[k]
        crop = source[int(y1) : max(int(y1) + 1, int(np.ceil(y2))), int(x1) : max(int(x1) + 1, int(np.ceil(x2)))]
        ch, cw = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
        if ch >= height or cw >= width or crop.size == 0:
            continue
        x0 = int(torch.randint(0, width - cw + 1, (1,), generator=generator))
        y0 = int(torch.randint(0, height - ch + 1, (1,), generator=generator))
        box = np.array([[x0, y0, x0 + cw, y0 + ch]], np.float32)
        if (_ioa(placed, box) > max_overlap).any():
            continue
        image[y0 : y0 + ch, x0 : x0 + cw] = resize_image(crop, ch, cw)
        placed = np.concatenate([placed, box])
        pasted_boxes.append(box[0])
        pasted_index.append(k)
    if not pasted_boxes:
        return image, target
    src_area = (src_boxes[pasted_index, 2:] - src_boxes[pasted_index, :2]).prod(-1) * scale**2
    pasted = {
        "boxes": np.stack(pasted_boxes), "labels": np.asarray(src_target["labels"]).reshape(-1)[pasted_index],
        "iscrowd": np.zeros(len(pasted_index), np.int64), "area": src_area,
    }  # fmt: skip
    return image, _concat([target, pasted])


class MixUpDataset(Switchable):
    """With probability ``prob``, item ``i`` is :func:`mixup` of item ``i`` and a random other item,
    blended with a weight drawn from Beta(``alpha``, ``alpha``) (32: close to half and half)."""

    def __init__(self, dataset: Dataset, size: int, prob: float = 0.1, alpha: float = 32.0) -> None:
        """Wrap ``dataset`` (raw ``(image uint8 [H, W, 3], target)`` items, mosaics included).

        Args:
            dataset: The training items.
            size: Side of the square canvas both images are fitted to (the training input size).
            prob: Probability that an item is a mixup.
            alpha: Beta distribution parameter of the blend weight.
        """
        super().__init__(dataset, prob, "mixup")
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be > 0, got {alpha}")
        self.size = size
        self.beta = torch.distributions.Beta(float(alpha), float(alpha))

    def __getitem__(self, index: int) -> Item:
        if not self._draw():
            return self.dataset[index]
        other = int(torch.randint(len(self), ()))
        return mixup(self.dataset[index], self.dataset[other], self.size, float(self.beta.sample()))


class CopyPasteDataset(Switchable):
    """With probability ``prob``, item ``i`` gets up to ``max_objects`` boxes of a random other item
    pasted in as crops (:func:`copy_paste`): more, and rarer, objects per image, in new places."""

    def __init__(self, dataset: Dataset, prob: float = 0.3, max_objects: int = 8, max_overlap: float = 0.3) -> None:
        """Wrap ``dataset`` (raw items).

        Args:
            dataset: The training items.
            prob: Probability that an item gets pasted objects.
            max_objects: Most boxes pasted into one item.
            max_overlap: Most of an existing box a pasted crop may cover.
        """
        super().__init__(dataset, prob, "copy-paste")
        if max_objects < 1 or not 0 <= max_overlap <= 1:
            raise ValueError(f"copy-paste needs max_objects >= 1 and max_overlap in [0, 1], got {max_objects}, {max_overlap}")
        self.max_objects = max_objects
        self.max_overlap = max_overlap

    def __getitem__(self, index: int) -> Item:
        if not self._draw():
            return self.dataset[index]
        other = int(torch.randint(len(self), ()))
        return copy_paste(self.dataset[index], self.dataset[other], None, self.max_objects, self.max_overlap)
