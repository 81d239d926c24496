"""Albumentations pipelines (eval letterbox, train augmentation) and the dataset wrapper that applies them."""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from detkit.data.augment import AugmentationSpec, build_augmentations
from detkit.ops.boxes import letterbox_resize

__all__ = ["eval_transforms", "train_transforms", "TransformedDataset", "LABEL_FIELDS"]

#: Per-box fields carried through the pipelines next to the boxes (dropped with them).
LABEL_FIELDS = ("labels", "iscrowd", "area")
_FIELD_DTYPES = {"labels": np.int64, "iscrowd": np.int64, "area": np.float32}


def _bbox_params(min_visibility: float = 0.0, min_size: float = 0.0) -> A.BboxParams:
    return A.BboxParams(
        format="pascal_voc",
        label_fields=list(LABEL_FIELDS),
        min_visibility=min_visibility,
        min_width=min_size,
        min_height=min_size,
        clip=True,
        filter_invalid_bboxes=True,
    )


def eval_transforms(size: int) -> A.Compose:
    """Letterbox: resize the longest side to ``size``, then zero-pad bottom/right to ``size x size``.

    The resized sides are rounded to whole pixels, so the exact input-pixels-per-original-pixel
    factors differ per axis: :func:`detkit.ops.boxes.letterbox_resize` gives them, and input boxes
    divided by them are the original boxes.

    Args:
        size: Side of the square network input.
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return A.Compose(
        [
            A.LongestMaxSize(max_size=size),
            A.PadIfNeeded(
                min_height=size, min_width=size, position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0
            ),
        ],
        bbox_params=_bbox_params(),
    )


def train_transforms(
    size: int,
    hflip_prob: float = 0.5,
    scale_range: tuple[float, float] = (0.6, 1.4),
    color_jitter: float = 0.2,
    augmentations: AugmentationSpec = "default",
) -> A.Compose:
    """Training augmentation around the eval letterbox.

    Resize the longest side to ``size`` times a random factor from ``scale_range``, pad (at a random
    position) and randomly crop to ``size x size``, then apply ``augmentations`` (a preset, by default
    a horizontal flip and colour jitter, or a config list; see
    :func:`~detkit.data.augment.build_augmentations`). Boxes less than 30 % visible after the
    pipeline, or degenerate (under 1 px wide or high), are dropped.

    Args:
        size: Side of the square network input.
        hflip_prob: Probability of a horizontal flip.
        scale_range: ``(low, high)`` multiplier of the letterbox resize; ``(1, 1)`` disables scale jitter.
        color_jitter: Strength of brightness / contrast / saturation jitter (hue gets a quarter of it);
            0 disables colour jitter.
        augmentations: ``"light"``, ``"default"``, ``"heavy"`` or a list of albumentations transforms
            (``{"name": "Rotate", "limit": 10}`` or ``{"class_path": ..., "init_args": ...}``).
    """
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    low, high = scale_range
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
    if not 0 <= hflip_prob <= 1:
        raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
    if color_jitter < 0:
        raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
    steps: list[A.BasicTransform] = [A.LongestMaxSize(max_size=size)]
    if (low, high) != (1.0, 1.0):
        steps.append(A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=1.0))
    steps += [
        A.PadIfNeeded(min_height=size, min_width=size, position="random", border_mode=cv2.BORDER_CONSTANT, fill=0),
        A.RandomCrop(height=size, width=size),
    ]
    steps += build_augmentations(augmentations, hflip_prob, color_jitter)
    return A.Compose(steps, bbox_params=_bbox_params(min_visibility=0.3, min_size=1.0))


class TransformedDataset(Dataset):
    """Apply an albumentations pipeline to a detection dataset and convert items to tensors.

    Items become ``(image FloatTensor[3, H, W] in [0, 1], target)`` with torch ``boxes`` float32
    ``[N, 4]`` xyxy in transformed pixels, ``labels`` / ``iscrowd`` int64 ``[N]``, ``area`` float32
    ``[N]`` (original pixels), ``orig_size`` int64 ``[2]`` (h, w before transforms), ``scale``
    float32 ``[2]``, the eval letterbox's exact ``(x, y)`` factors (see
    :func:`detkit.ops.boxes.letterbox_resize`), ``image_id`` and ``file_name``.

    The pipeline's random state is reseeded from torch in each DataLoader worker (and once in the
    main process), so workers do not repeat each other and ``seed_everything`` makes runs repeatable.
    """

    def __init__(self, dataset: Dataset, transforms: A.Compose, size: int) -> None:
        """Wrap ``dataset``.

        Args:
            dataset: Dataset of ``(image uint8 [H, W, 3], target)`` items with numpy/torch per-box fields.
            transforms: Pipeline from :func:`eval_transforms` or :func:`train_transforms`.
            size: Input size the pipeline letterboxes to (defines ``scale``).
        """
        self.dataset = dataset
        self.transforms = transforms
        self.size = size
        self._seeded_for: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _reseed(self) -> None:
        info = get_worker_info()
        seed = info.seed if info is not None else torch.initial_seed()
        if seed != self._seeded_for:
            self.transforms.set_random_seed(int(seed % 2**32))
            self._seeded_for = seed

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.dataset[index]
        self._reseed()
        height, width = image.shape[:2]
        fields = {k: np.asarray(target[k], dtype=dt).reshape(-1) for k, dt in _FIELD_DTYPES.items()}
        boxes = np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4)
        out = self.transforms(image=image, bboxes=boxes, **fields)
        result: dict[str, Any] = {
            "boxes": torch.as_tensor(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)),
            **{k: torch.as_tensor(np.asarray(out[k], dtype=dt).reshape(-1)) for k, dt in _FIELD_DTYPES.items()},
            "image_id": int(target["image_id"]),
            "file_name": str(target["file_name"]),
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
            "scale": torch.tensor(letterbox_resize((height, width), self.size)[1], dtype=torch.float32),
        }
        tensor = torch.from_numpy(np.ascontiguousarray(out["image"]).transpose(2, 0, 1).copy()).float().div_(255.0)
        return tensor, result
