"""The PyTorch predictor: a ``detkit fit`` checkpoint's detector, built from the config the checkpoint records."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from detkit.checkpoints import load_detector_checkpoint
from detkit.config import instantiate
from detkit.models import Detector
from detkit.predictors.base import BasePredictor

__all__ = ["Predictor", "instantiate_detector", "load_checkpoint_predictor", "load_torchvision_predictor"]


class Predictor(nn.Module, BasePredictor):
    """A PyTorch detector with its class names and input size (see :class:`BasePredictor` for
    ``predict``); the predictor of a ``detkit fit`` checkpoint, and the one to export, prune and explain.

    Attributes:
        detector: The plain :class:`~detkit.models.Detector` (eval mode).
        class_names: One name per label.
        input_size: Side of the square letterbox the detector was trained at.
        pad_multiple: The letterbox pads its square to a multiple of this.
    """

    def __init__(self, detector: Detector, class_names: Sequence[str], input_size: int, pad_multiple: int = 32) -> None:
        """Wrap a detector for prediction (eval mode).

        Args:
            detector: The trained detector.
            class_names: One name per label.
            input_size: Side of the square letterbox the detector was trained at.
            pad_multiple: The letterbox pads its square to a multiple of this, as in training.
        """
        super().__init__()
        self.detector = detector.eval()  # nn.Module registers it as a submodule
        self.class_names = list(class_names)
        self.input_size = int(input_size)
        self.pad_multiple = int(pad_multiple)

    @property
    def detector(self) -> Detector:
        # nn.Module keeps submodules apart from plain attributes, and this class property comes
        # before nn.Module's own lookup: read back the submodule that __init__ registered.
        for name, child in self.named_children():
            if name == "detector":
                return child  # type: ignore[return-value]
        raise AttributeError(f"{type(self).__name__} has no detector yet")

    @property
    def device(self) -> torch.device:
        return next(self.detector.parameters()).device

    @torch.inference_mode()
    def detect_letterboxed(self, images: np.ndarray, score_threshold: float | None = None) -> list[dict[str, torch.Tensor]]:
        # uint8 (B, S, S, 3) -> [0, 1] floats (B, 3, S, S)
        inputs = torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return self.detector.predict_batch(inputs, score_threshold=score_threshold)

    @torch.inference_mode()
    def predict_batch(self, images: torch.Tensor, score_threshold: float | None = None) -> list[dict[str, torch.Tensor]]:
        return self.detector.predict_batch(images.to(self.device), score_threshold=score_threshold)


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
        config: The detector's config.
        num_classes: Number of classes.
        pretrained_backbone: Load the backbone's configured pretrained ``weights``; ``False``
            builds it with random weights (for a state dict that replaces them anyway: no download).
        trusted: Modules besides ``detkit`` whose classes the config may name (your own heads,
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


def load_checkpoint_predictor(path: str | Path, device: str | torch.device = "cpu", trusted: Sequence[str] = ()) -> Predictor:
    """A ``detkit fit`` checkpoint as a :class:`Predictor` in eval mode (what
    :func:`detkit.load_detector` does for every file that is not an export).

    Loading uses ``torch.load(weights_only=True)`` and builds only detkit classes (plus those of the
    ``trusted`` modules): a checkpoint cannot run code. The detector's config, class names and
    input size come from the checkpoint's ``detkit`` block.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is truncated, not a torch file, or not a detkit checkpoint (the
            message names it), or records no detector config or input size.
    """
    path = Path(path)
    # names the file if missing, unreadable, not detkit's or without detector weights; format 1 -> current
    checkpoint, weights = load_detector_checkpoint(path)
    meta = checkpoint["detkit"]
    if meta.get("detector") is None:
        raise ValueError(
            f"{path} has no detector config: it was saved by a DetectionModule built in Python with objects; "
            "build it with DetectionModule.from_config(...) or through the detkit CLI"
        )
    # The checkpoint holds every weight: build the backbone without fetching pretrained ones.
    detector = instantiate_detector(meta["detector"], meta["num_classes"], pretrained_backbone=False, trusted=trusted)
    try:
        detector.load_state_dict(weights)
    except RuntimeError as error:  # torch lists the missing, unexpected and mis-shaped weights
        raise ValueError(f"{path}: its weights do not fit its detector config: {error}") from None
    if meta.get("input_size") is None:
        raise ValueError(f"{path} does not record the input size it was trained at")
    return Predictor(detector, meta["class_names"], meta["input_size"], meta.get("pad_multiple", 32)).to(device).eval()


def load_torchvision_predictor(
    source: str, device: str | torch.device = "cpu", input_size: int = 800, pad_multiple: int = 128
) -> Predictor:
    """A torchvision COCO detector as a :class:`Predictor`, from ``"torchvision:<model>:<WEIGHTS or path>"``
    (see :mod:`detkit.models.torchvision_import`; a weights name downloads once through torchvision).

    The class names are the published weights' (COCO: 91, ``__background__`` and ``N/A`` among them,
    which never fire); a local file with 91 classes gets COCO's, any other count ``"0", "1", ...``.

    Args:
        source: The weights.
        device: Where the detector runs.
        input_size: Side of the square letterbox (torchvision resizes the shorter side to 800 instead:
            see the README's caveats).
        pad_multiple: The letterbox pads its square to a multiple of this (128: the largest stride).
    """
    from detkit.models.torchvision_import import (
        TORCHVISION_DETECTORS,
        load_torchvision_weights,
        parse_torchvision_source,
        read_torchvision_state,
        torchvision_class_names,
        torchvision_num_classes,
    )

    model, weights = parse_torchvision_source(source)
    _, state = read_torchvision_state(source)
    num_classes = torchvision_num_classes(model, state)
    detector = TORCHVISION_DETECTORS[model](num_classes=num_classes)
    load_torchvision_weights(detector, model, state)
    names = torchvision_class_names(model, weights if not Path(weights).suffix else "COCO_V1")
    if len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    return Predictor(detector, names, input_size, pad_multiple).to(device).eval()
