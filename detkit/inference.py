"""Downstream inference: load a detkit checkpoint into a plain model and predict on images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from detkit.checkpoints import migrate_checkpoint, read_checkpoint
from detkit.config import instantiate
from detkit.data.images import ImageLike, to_rgb_array
from detkit.models import Detector
from detkit.ops.letterbox import Letterbox

#: Every image form :meth:`Predictor.predict` takes (see :func:`~detkit.data.images.to_rgb_array`).
ImageInput = ImageLike

#: The name earlier detkit versions exported: one image in any form -> ``[H, W, 3]`` uint8 RGB.
to_hwc_array = to_rgb_array


class Predictor(nn.Module):
    """A detector with its class names and input size: ``predict`` takes images as users have them.

    Attributes:
        detector: the plain :class:`~detkit.models.Detector` (eval mode).
        class_names: one name per label.
        input_size: side of the square letterbox the detector was trained at.
        pad_multiple: the letterbox pads its square to a multiple of this.
    """

    def __init__(self, detector: Detector, class_names: Sequence[str], input_size: int, pad_multiple: int = 32) -> None:
        """Wrap a detector for prediction (eval mode).

        Args:
            detector: the trained detector.
            class_names: one name per label.
            input_size: side of the square letterbox the detector was trained at.
            pad_multiple: the letterbox pads its square to a multiple of this, as in training.
        """
        super().__init__()
        self.detector = detector.eval()
        self.class_names = list(class_names)
        self.input_size = int(input_size)
        self.pad_multiple = int(pad_multiple)

    @property
    def device(self) -> torch.device:
        return next(self.detector.parameters()).device

    @property
    def letterbox(self) -> Letterbox:
        """The letterbox of training: longest side to ``input_size``, padded to ``pad_multiple``."""
        return Letterbox(self.input_size, pad_multiple=self.pad_multiple)

    @torch.inference_mode()
    def predict(
        self, images: ImageInput | Sequence[ImageInput], score_threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """Detect objects.

        Args:
            images: one image or a list: a file path, PIL image, ``HxWx3`` uint8 RGB numpy array
                or ``[3, H, W]`` tensor (uint8, or floats in ``[0, 1]``); grey, RGBA and 16-bit
                forms too. Every form gives the pixels :func:`~detkit.data.images.read_image` gives
                for the same file (see :func:`~detkit.data.images.to_rgb_array`).
            score_threshold: keep detections scoring above this (default: the detector's).

        Returns:
            One dict per image: ``boxes`` ``FloatTensor[D, 4]`` xyxy in the original image's
            pixels, ``scores`` ``[D]``, ``labels`` ``Int64Tensor[D]`` and ``names`` (list of str).
        """

        def detect(batch: np.ndarray) -> list[dict[str, torch.Tensor]]:
            # uint8 (B, S, S, 3) -> [0, 1] floats (B, 3, S, S)
            inputs = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            return self.detector.predict_batch(inputs, score_threshold=score_threshold)

        return predict_letterboxed(images, self.letterbox, self.class_names, detect)


def predict_letterboxed(
    images: ImageInput | Sequence[ImageInput],
    letterbox: Letterbox,
    class_names: Sequence[str],
    detect: Callable[[np.ndarray], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """What every predictor's ``predict`` does around its model: read each image
    (:func:`~detkit.data.images.to_rgb_array`), letterbox it, run ``detect`` on the uint8 batch
    ``[B, S, S, 3]`` (-> per image ``boxes`` in letterboxed pixels, ``scores``, ``labels``) and
    map the boxes back to each original image, with the class ``names``."""
    batch = list(images) if isinstance(images, (list, tuple)) else [images]
    if not batch:
        return []
    arrays = [to_rgb_array(image) for image in batch]
    boxed = [letterbox(array) for array in arrays]
    detections = detect(np.stack([padded for padded, _ in boxed]))
    results = []
    for det, (_, scale), array in zip(detections, boxed, arrays):
        boxes = Letterbox.to_original(torch.as_tensor(det["boxes"]), scale, array.shape[:2])
        labels = torch.as_tensor(det["labels"]).long()
        names = [class_names[i] for i in labels.tolist()]
        results.append({"boxes": boxes, "scores": torch.as_tensor(det["scores"]), "labels": labels, "names": names})
    return results


def _class_paths(config: Any) -> list[str]:
    """Every ``class_path`` in a nested config."""
    if isinstance(config, dict):
        own = [str(config["class_path"])] if "class_path" in config else []
        return own + [path for value in config.values() for path in _class_paths(value)]
    if isinstance(config, (list, tuple)):
        return [path for value in config for path in _class_paths(value)]
    return []


def instantiate_detector(
    config: dict[str, Any], num_classes: int, pretrained_backbone: bool = True, trusted: Sequence[str] = ()
) -> Detector:
    """Build a detector from its plain ``{class_path, init_args}`` config (as saved in checkpoints).

    Args:
        config: the detector's config.
        num_classes: number of classes.
        pretrained_backbone: load the backbone's configured pretrained ``weights``; ``False``
            builds it with random weights (for a state dict that replaces them anyway: no download).
        trusted: modules besides ``detkit`` whose classes the config may name (your own heads,
            necks or backbones); importing a module runs its code, so nothing else is imported.
    """
    prefixes = ("detkit.", *(f"{name.rstrip('.')}." for name in trusted))
    if not str(config.get("class_path", "")).startswith("detkit."):
        raise ValueError(f"refusing to build detector class {config.get('class_path')!r}: only detkit classes are loaded")
    foreign = [path for path in _class_paths(config) if not path.startswith(prefixes)]
    if foreign:
        raise ValueError(
            f"the detector config names classes outside detkit: {', '.join(sorted(set(foreign)))}; "
            "pass their modules as trusted=[...] to load them (importing a module runs its code)"
        )
    backbone = (config.get("init_args") or {}).get("backbone")
    if not pretrained_backbone and isinstance(backbone, dict) and "weights" in (backbone.get("init_args") or {}):
        backbone = {**backbone, "init_args": {**backbone["init_args"], "weights": None}}
        config = {**config, "init_args": {**config["init_args"], "backbone": backbone}}
    return instantiate(Callable[[int], Detector], config)(num_classes)


def load_detector(path: str | Path, device: str | torch.device = "cpu", trusted: Sequence[str] = ()) -> Predictor:
    """Load a checkpoint written by ``detkit fit`` into a ready :class:`Predictor` in eval mode.

    A model written by ``detkit export`` (``.onnx``, ``.torchscript``, with its ``.json`` sidecar
    beside it) loads into a :class:`~detkit.deploy.ExportedPredictor` instead: the same ``predict``
    and results, run by onnxruntime (``pip install 'detkit[deploy]'``) or TorchScript on the CPU.

    Loading uses ``torch.load(weights_only=True)`` and builds only detkit classes (plus those of the
    ``trusted`` modules, e.g. ``trusted=["my_heads"]`` for your own head): a checkpoint cannot run
    code. No Trainer or config file is needed; the detector's config, class names and input size
    come from the checkpoint's ``detkit`` block.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is truncated, not a torch file, or not a detkit checkpoint (the
            message names it), or records no detector config or input size.
    """
    path = Path(path)
    if path.suffix in (".onnx", ".torchscript"):
        from detkit.deploy.runtime import OnnxPredictor, TorchScriptPredictor

        if torch.device(device).type != "cpu":
            raise ValueError(f"{path}: exported models run on the CPU here (onnxruntime / TorchScript), not {device}")

        return (OnnxPredictor if path.suffix == ".onnx" else TorchScriptPredictor)(path)  # type: ignore[return-value]
    checkpoint = read_checkpoint(path)  # names the file if missing, unreadable or not detkit's
    try:
        checkpoint = migrate_checkpoint(checkpoint)  # format 1 -> current (config and weight names)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    meta = checkpoint["detkit"]
    if meta.get("detector") is None:
        raise ValueError(
            f"{path} has no detector config: it was saved by a DetectionModule built in Python with objects; "
            "build it with DetectionModule.from_config(...) or through the detkit CLI"
        )
    # The checkpoint holds every weight: build the backbone without fetching pretrained ones.
    detector = instantiate_detector(meta["detector"], meta["num_classes"], pretrained_backbone=False, trusted=trusted)
    prefix = "detector."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        detector.load_state_dict(state)
    except RuntimeError as error:  # torch lists the missing, unexpected and mis-shaped weights
        raise ValueError(f"{path}: its weights do not fit its detector config: {error}") from None
    if meta.get("input_size") is None:
        raise ValueError(f"{path} does not record the input size it was trained at")
    input_size = meta["input_size"]
    return Predictor(detector, meta["class_names"], input_size, meta.get("pad_multiple", 32)).to(device).eval()
