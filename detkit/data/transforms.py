"""Per-image transforms (eval letterbox, train augmentation) and the dataset wrapper that applies them."""

from __future__ import annotations

from typing import Any, Protocol

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from detkit.data.augment import AugmentationSpec, build_augmentations
from detkit.ops.letterbox import Letterbox, fit_longest_side, resize_image

__all__ = ["EvalTransform", "LABEL_FIELDS", "RandomLetterboxResize", "TrainTransform", "Transform", "TransformedDataset"]

#: Per-box fields carried through the transforms next to the boxes (dropped with them in training).
LABEL_FIELDS = ("labels", "iscrowd", "area")
_FIELD_DTYPES = {"labels": np.int64, "iscrowd": np.int64, "area": np.float32}


def _fields(target: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``boxes`` float32 ``[N, 4]`` and the :data:`LABEL_FIELDS` as numpy ``[N]`` arrays."""
    boxes = np.asarray(target["boxes"], dtype=np.float32).reshape(-1, 4)
    return boxes, {k: np.asarray(target[k], dtype=dt).reshape(-1) for k, dt in _FIELD_DTYPES.items()}


class Transform(Protocol):
    """What :class:`TransformedDataset` applies: ``(image, target) -> (image, target)`` in numpy.

    The output target has ``boxes`` in the output image's pixels, the :data:`LABEL_FIELDS` and
    ``scale`` ``(sx, sy)``; it may add ``orig_boxes``.
    """

    def __call__(self, image: np.ndarray, target: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]: ...

    def set_random_seed(self, seed: int) -> None: ...


class EvalTransform:
    """Evaluation / prediction: the :class:`~detkit.ops.letterbox.Letterbox`, keeping every box.

    The output target has ``boxes`` in input pixels (``Letterbox.to_input``), the unchanged
    :data:`LABEL_FIELDS` (``area`` stays in original pixels), ``scale`` ``(sx, sy)`` and
    ``orig_boxes``: the reader's boxes in original pixels, row for row with ``boxes``.
    """

    def __init__(self, size: int, pad_multiple: int = 32) -> None:
        """Args:
        size: Longest side of the resized image.
        pad_multiple: The input square's side is ``size`` rounded up to a multiple of this.
        """
        self.letterbox = Letterbox(size, pad_multiple)

    def __call__(self, image: np.ndarray, target: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        boxes, fields = _fields(target)
        padded, scale = self.letterbox(image)
        return padded, {"boxes": Letterbox.to_input(boxes, scale), **fields, "scale": scale, "orig_boxes": boxes.copy()}

    def set_random_seed(self, seed: int) -> None:
        """Nothing to seed: the letterbox is deterministic."""


class RandomLetterboxResize(A.DualTransform):
    """Resize so the longest side is ``size`` times a factor drawn uniformly from ``scale_range``.

    One :func:`~detkit.ops.letterbox.resize_image` per image (sides rounded as
    :func:`~detkit.ops.letterbox.fit_longest_side`); boxes follow through albumentations (which
    keeps them normalised to the image). Randomness comes from albumentations' per-transform
    generator, so ``Compose.set_random_seed`` makes it repeatable.
    """

    def __init__(self, size: int, scale_range: tuple[float, float] = (1.0, 1.0), p: float = 1.0) -> None:
        """Args:
        size: Longest side before the random factor.
        scale_range: ``(low, high)`` random multiplier of ``size``; ``(1, 1)``: exactly ``size``.
        p: Probability of applying the transform.
        """
        super().__init__(p=p)
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.size = size
        self.scale_range = (float(low), float(high))

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        factor = self.py_random.uniform(*self.scale_range)
        (new_h, new_w), _ = fit_longest_side(height, width, self.size * factor)
        return {"resized": (new_h, new_w)}

    def apply(self, img: np.ndarray, resized: tuple[int, int], **params: Any) -> np.ndarray:
        return resize_image(img, *resized)

    def apply_to_bboxes(self, bboxes: np.ndarray, **params: Any) -> np.ndarray:
        return bboxes  # normalised to the image: unchanged by a resize

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "scale_range")


class TrainTransform:
    """Training augmentation: a random-scale letterbox crop to ``size x size``, then ``augmentations``.

    Resize the longest side to ``size`` times a random factor from ``scale_range``
    (:class:`RandomLetterboxResize`), pad (at a random position) and randomly crop to
    ``size x size``, then apply ``augmentations`` (a preset, by default a horizontal flip and colour
    jitter, or a config list; see :func:`~detkit.data.augment.build_augmentations`). Boxes less than
    30 % visible after the pipeline are dropped with their fields (cropping is part of the
    augmentation); boxes that shrink under 1 px wide or high are dropped too and counted in the
    output's ``small_boxes_dropped`` (:class:`~detkit.training.module.DetectionModule` sums and reports it
    per epoch). The output ``scale`` is the eval letterbox's ``(sx, sy)`` at ``size``.

    Attributes:
        pipeline: The albumentations ``Compose``.
    """

    def __init__(
        self,
        size: int,
        hflip_prob: float = 0.5,
        scale_range: tuple[float, float] = (0.6, 1.4),
        color_jitter: float = 0.2,
        augmentations: AugmentationSpec = "default",
    ) -> None:
        """Build the pipeline.

        Args:
            size: Side of the square network input.
            hflip_prob: Probability of a horizontal flip.
            scale_range: ``(low, high)`` multiplier of the letterbox resize; ``(1, 1)`` disables scale jitter.
            color_jitter: Strength of brightness / contrast / saturation jitter (hue gets a quarter of it);
                0 disables colour jitter.
            augmentations: ``"light"``, ``"default"``, ``"heavy"`` or a list of albumentations transforms
                (``{"name": "Rotate", "limit": 10}`` or ``{"class_path": ..., "init_args": ...}``).

        Raises:
            ValueError: A bad size, probability, range, strength or augmentation entry.
        """
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not 0 <= hflip_prob <= 1:
            raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
        if color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
        self.size = int(size)
        steps: list[A.BasicTransform] = [
            RandomLetterboxResize(size, tuple(scale_range)),
            A.PadIfNeeded(min_height=size, min_width=size, position="random", border_mode=cv2.BORDER_CONSTANT, fill=0),
            A.RandomCrop(height=size, width=size),
            *build_augmentations(augmentations, hflip_prob, color_jitter),
        ]
        bbox_params = A.BboxParams(
            format="pascal_voc",
            label_fields=list(LABEL_FIELDS),
            min_visibility=0.3,
            clip=True,  # boxes under 1 px are dropped (and counted) in __call__
            filter_invalid_bboxes=True,
        )
        self.pipeline = A.Compose(steps, bbox_params=bbox_params)

    def __call__(self, image: np.ndarray, target: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        boxes, fields = _fields(target)
        out = self.pipeline(image=image, bboxes=boxes, **fields)
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1.0) & ((boxes[:, 3] - boxes[:, 1]) >= 1.0)
        result = {
            "boxes": boxes[keep],
            **{k: np.asarray(out[k], dtype=dt).reshape(-1)[keep] for k, dt in _FIELD_DTYPES.items()},
            "scale": fit_longest_side(*image.shape[:2], self.size)[1],
            "small_boxes_dropped": int((~keep).sum()),
        }
        return out["image"], result

    def set_random_seed(self, seed: int) -> None:
        """Reseed the pipeline's random generators."""
        self.pipeline.set_random_seed(seed)


class TransformedDataset(Dataset):
    """Apply a :class:`Transform` to a reader's items and convert them to tensors.

    Items become ``(image FloatTensor[3, H, W] in [0, 1], target)`` with torch ``boxes`` float32
    ``[N, 4]`` xyxy in transformed pixels, ``labels`` / ``iscrowd`` int64 ``[N]``, ``area`` float32
    ``[N]`` (original pixels), ``orig_size`` int64 ``[2]`` (h, w before the transform), ``scale``
    float32 ``[2]`` (the letterbox's exact ``(sx, sy)``), ``image_id``, ``file_name``, and with
    :class:`EvalTransform` ``orig_boxes`` float32 ``[N, 4]`` (original pixels, same rows as ``boxes``).

    The transform's random state is reseeded from torch in each DataLoader worker (and once in the
    main process), so workers do not repeat each other and ``seed_everything`` makes runs repeatable.

    Attributes:
        dataset: The wrapped reader (``dataset[i]`` is the untransformed item).
        transform: The transform.
    """

    def __init__(self, dataset: Dataset, transform: Transform) -> None:
        """Args:
        dataset: Dataset of ``(image uint8 [H, W, 3], target)`` items with numpy/torch per-box fields.
        transform: :class:`EvalTransform`, :class:`TrainTransform` or another :class:`Transform`.
        """
        self.dataset = dataset
        self.transform = transform
        self._seeded_for: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _reseed(self) -> None:
        info = get_worker_info()
        seed = info.seed if info is not None else torch.initial_seed()
        if seed != self._seeded_for:
            self.transform.set_random_seed(int(seed % 2**32))
            self._seeded_for = seed

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.dataset[index]
        self._reseed()
        height, width = image.shape[:2]
        out_image, out = self.transform(image, target)
        result: dict[str, Any] = {
            "boxes": torch.as_tensor(np.asarray(out["boxes"], dtype=np.float32).reshape(-1, 4)),
            **{k: torch.as_tensor(np.asarray(out[k], dtype=dt).reshape(-1)) for k, dt in _FIELD_DTYPES.items()},
            "image_id": int(target["image_id"]),
            "file_name": str(target["file_name"]),
            "orig_size": torch.tensor([height, width], dtype=torch.int64),
            "scale": torch.tensor(out["scale"], dtype=torch.float32),
        }
        if "small_boxes_dropped" in out:
            result["small_boxes_dropped"] = int(out["small_boxes_dropped"])
        if "orig_boxes" in out:
            result["orig_boxes"] = torch.as_tensor(np.asarray(out["orig_boxes"], dtype=np.float32).reshape(-1, 4))
        tensor = torch.from_numpy(np.ascontiguousarray(out_image).transpose(2, 0, 1).copy()).float().div_(255.0)
        return tensor, result
