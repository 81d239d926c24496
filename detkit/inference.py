"""Downstream inference: load a detkit checkpoint into a plain model and predict on images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from detkit.data.images import read_image
from detkit.models import Detector
from detkit.ops.boxes import letterbox_resize, unletterbox_boxes

#: Checkpoint ``detkit`` block versions this code reads.
SUPPORTED_FORMAT_VERSIONS = (1,)

ImageInput = Union[str, Path, Image.Image, np.ndarray, Tensor]


def _to_chw_float(image: ImageInput) -> Tensor:
    """One image in any accepted form -> ``FloatTensor[3, H, W]`` in ``[0, 1]``."""
    if isinstance(image, (str, Path)):
        image = read_image(image)
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"numpy images must be HxWx3 uint8 RGB, got shape {image.shape} dtype {image.dtype}")
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div_(255.0)  # copy: PIL arrays are read-only
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(f"tensor images must be CHW float in [0, 1], got shape {tuple(image.shape)} {image.dtype}")
        return image.float()
    raise TypeError(f"unsupported image type {type(image).__name__}; give a path, PIL image, numpy array or tensor")


class Predictor(nn.Module):
    """A detector with its class names and input size: ``predict`` takes images as users have them.

    Attributes:
        detector: the plain :class:`~detkit.models.Detector` (eval mode).
        class_names: one name per label.
        input_size: side of the square letterbox the detector was trained at.
    """

    def __init__(self, detector: Detector, class_names: Sequence[str], input_size: int) -> None:
        super().__init__()
        self.detector = detector.eval()
        self.class_names = list(class_names)
        self.input_size = int(input_size)

    @property
    def device(self) -> torch.device:
        return next(self.detector.parameters()).device

    def letterbox(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """``[3, H, W]`` -> (``[3, S', S']`` resized so the longest side is ``input_size`` and padded
        bottom/right to a multiple of 32, exact ``(x, y)`` scale ``[2]``)."""
        h, w = image.shape[-2:]
        (new_h, new_w), scale_xy = letterbox_resize((h, w), self.input_size)
        resized = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
        side = -(-self.input_size // 32) * 32
        padded = resized.new_zeros(3, side, side)
        padded[:, :new_h, :new_w] = resized
        return padded, torch.tensor(scale_xy, device=image.device)

    @torch.inference_mode()
    def predict(
        self, images: ImageInput | Sequence[ImageInput], score_threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """Detect objects.

        Args:
            images: one image or a list: a file path, PIL image, ``HxWx3`` uint8 RGB numpy array
                or ``[3, H, W]`` float tensor in ``[0, 1]``.
            score_threshold: keep detections at or above this score (default: the detector's).

        Returns:
            One dict per image: ``boxes`` ``FloatTensor[D, 4]`` xyxy in the original image's
            pixels, ``scores`` ``[D]``, ``labels`` ``Int64Tensor[D]`` and ``names`` (list of str).
        """
        batch = list(images) if isinstance(images, (list, tuple)) else [images]
        if not batch:
            return []
        chw = [_to_chw_float(image) for image in batch]
        boxed = [self.letterbox(image.to(self.device)) for image in chw]
        inputs = torch.stack([padded for padded, _ in boxed])
        detections = self.detector.predict_batch(inputs, score_threshold=score_threshold)
        results = []
        for det, (_, scale), image in zip(detections, boxed, chw):
            boxes = unletterbox_boxes(det["boxes"], scale, tuple(image.shape[-2:]))
            labels = det["labels"]
            names = [self.class_names[i] for i in labels.tolist()]
            results.append({"boxes": boxes, "scores": det["scores"], "labels": labels, "names": names})
        return results


def instantiate_detector(config: dict[str, Any], num_classes: int, pretrained_backbone: bool = True) -> Detector:
    """Build a detector from its plain ``{class_path, init_args}`` config (as saved in checkpoints).

    Args:
        config: the detector's config.
        num_classes: number of classes.
        pretrained_backbone: load the backbone's configured pretrained ``weights``; ``False``
            builds it with random weights (for a state dict that replaces them anyway: no download).
    """
    from jsonargparse import ArgumentParser

    class_path = str(config.get("class_path", ""))
    if not class_path.startswith("detkit."):
        raise ValueError(f"refusing to build detector class {class_path!r}: only detkit classes are loaded")
    backbone = (config.get("init_args") or {}).get("backbone")
    if not pretrained_backbone and isinstance(backbone, dict) and "weights" in (backbone.get("init_args") or {}):
        backbone = {**backbone, "init_args": {**backbone["init_args"], "weights": None}}
        config = {**config, "init_args": {**config["init_args"], "backbone": backbone}}
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--detector", type=Callable[[int], Detector])
    parsed = parser.parse_object({"detector": config})
    factory = parser.instantiate(parsed).detector
    return factory(num_classes)


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> Predictor:
    """Load a checkpoint written by ``detkit fit`` into a ready :class:`Predictor` in eval mode.

    Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot run code. No Trainer or
    config file is needed; the detector's config, class names and input size come from the
    checkpoint's ``detkit`` block.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    meta = checkpoint.get("detkit")
    if meta is None:
        raise ValueError(f"{path} is not a detkit checkpoint (no 'detkit' block)")
    if meta.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise ValueError(
            f"{path} has detkit checkpoint format {meta.get('format_version')}; this detkit reads {SUPPORTED_FORMAT_VERSIONS}"
        )
    if meta.get("detector") is None:
        raise ValueError(
            f"{path} has no detector config: it was saved by a DetectionModule built in Python with objects; "
            "build it with DetectionModule.from_config(...) or through the detkit CLI"
        )
    # The checkpoint holds every weight: build the backbone without fetching pretrained ones.
    detector = instantiate_detector(meta["detector"], meta["num_classes"], pretrained_backbone=False)
    prefix = "detector."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    detector.load_state_dict(state)
    if meta.get("input_size") is None:
        raise ValueError(f"{path} does not record the input size it was trained at")
    input_size = meta["input_size"]
    return Predictor(detector, meta["class_names"], input_size).to(device).eval()
