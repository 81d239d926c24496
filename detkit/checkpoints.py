"""The ``checkpoint["detkit"]`` format: its version and the migration of older checkpoints.

A detkit checkpoint is a Lightning checkpoint dict with a ``detkit`` block::

    {"format_version": 2, "num_classes": int, "class_names": [str, ...],
     "detector": {"class_path": "detkit.models.Detector", "init_args": {...}} or None,
     "input_size": int, "pad_multiple": int}

and the detector's weights under ``state_dict`` with the prefix ``detector.``.

Versions:
    1: flat ``Detector`` arguments (``fpn_channels``, ``head_convs``, ``score_threshold``, ...);
       weights ``detector.fpn.*`` and ``detector.head.*``.
    2: composed ``Detector(backbone, neck, head)`` with ``neck`` and ``head`` ``class_path`` blocks
       (the head holding its ``assigner``, ``loss`` and ``decoder``); weights ``detector.neck.*``;
       ``pad_multiple`` of the letterbox (format 1 always padded to 32).
"""

from __future__ import annotations

import copy
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["CHECKPOINT_FORMAT_VERSION", "load_detector_checkpoint", "migrate_checkpoint", "read_checkpoint"]

#: Version of the ``checkpoint["detkit"]`` block this detkit writes.
CHECKPOINT_FORMAT_VERSION = 2

_STATE_PREFIX = "detector."

# Format 1's Detector arguments with their defaults (frozen: a format-1 config that omits an
# argument meant this value), grouped by the part of the composed detector that takes them over.
_V1_NECK = {"fpn_channels": ("out_channels", 256), "fpn_extra_levels": ("extra_levels", 2)}
_V1_HEAD = {
    "head_convs": ("num_convs", 4),
    "head_kernel_size": ("kernel_size", 3),
    "head_norm": ("norm", "group"),
    "head_activation": ("activation", "relu"),
    "prior_prob": ("prior_prob", 0.01),
}
_V1_ASSIGNER = {"center_sampling_radius": ("center_sampling_radius", 1.5), "size_multiplier": ("size_multiplier", 8.0)}
_V1_LOSS = {
    "focal_alpha": ("focal_alpha", 0.25),
    "focal_gamma": ("focal_gamma", 2.0),
    "box_weight": ("box_weight", 1.0),
    "quality_weight": ("quality_weight", 1.0),
    "quality": ("quality", "centerness"),
}
_V1_DECODER = {
    "score_threshold": ("score_threshold", 0.05),
    "topk_per_level": ("topk_per_level", 1000),
    "nms_iou": ("nms_iou", 0.6),
    "max_detections": ("max_detections", 100),
}
_V1_DETECTOR = {
    "image_mean": ("image_mean", [0.485, 0.456, 0.406]),
    "image_std": ("image_std", [0.229, 0.224, 0.225]),
    "channels_last": ("channels_last", True),
}
_V1_KNOWN = {"backbone", "num_classes", *_V1_NECK, *_V1_HEAD, *_V1_ASSIGNER, *_V1_LOSS, *_V1_DECODER, *_V1_DETECTOR}


def _take(args: dict[str, Any], table: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """New-name -> value for every entry of ``table``, the format-1 default where ``args`` lacks it."""
    return {new: copy.deepcopy(args.get(old, default)) for old, (new, default) in table.items()}


def _migrate_detector_config_v1(config: dict[str, Any]) -> dict[str, Any]:
    """Format-1 flat ``Detector`` ``{class_path, init_args}`` -> the composed format-2 config.

    Every value is written out (old defaults included), so the migrated detector computes exactly
    what the format-1 one did whatever today's defaults are; format-1 detectors did not pad their
    input, hence ``pad_to_stride: False``.
    """
    class_path = str(config.get("class_path", ""))
    if class_path not in ("detkit.models.Detector", "detkit.models.detector.Detector"):
        raise ValueError(f"format-1 detector config has class_path {class_path!r}, expected detkit.models.Detector")
    args = dict(config.get("init_args") or {})
    unknown = sorted(set(args) - _V1_KNOWN)
    if unknown:
        raise ValueError(f"format-1 detector config has unknown arguments {unknown}")
    if "backbone" not in args:
        raise ValueError("format-1 detector config has no backbone")
    head_args = _take(args, _V1_HEAD)
    head_args["assigner"] = {"class_path": "detkit.models.FCOSAssigner", "init_args": _take(args, _V1_ASSIGNER)}
    head_args["loss"] = {"class_path": "detkit.models.FCOSLoss", "init_args": _take(args, _V1_LOSS)}
    head_args["decoder"] = {"class_path": "detkit.models.DenseDecoder", "init_args": _take(args, _V1_DECODER)}
    init_args: dict[str, Any] = {}
    if "num_classes" in args:  # only when the config was saved with it
        init_args["num_classes"] = args["num_classes"]
    init_args["backbone"] = copy.deepcopy(args["backbone"])
    init_args["neck"] = {"class_path": "detkit.models.FPN", "init_args": _take(args, _V1_NECK)}
    init_args["head"] = {"class_path": "detkit.models.FCOSHead", "init_args": head_args}
    init_args.update(_take(args, _V1_DETECTOR))
    init_args["pad_to_stride"] = False
    return {"class_path": "detkit.models.Detector", "init_args": init_args}


def _is_v1_detector_config(config: Any) -> bool:
    return isinstance(config, dict) and isinstance(config.get("init_args"), dict) and "neck" not in config["init_args"]


def _migrate_state_dict_v1(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Rename ``detector.fpn.*`` to ``detector.neck.*``; every other key (backbone, head) is unchanged."""
    old = _STATE_PREFIX + "fpn."
    new = _STATE_PREFIX + "neck."
    return {(new + key[len(old) :] if key.startswith(old) else key): value for key, value in state_dict.items()}


def migrate_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a detkit checkpoint dict (as ``torch.load`` returns it) to :data:`CHECKPOINT_FORMAT_VERSION`.

    The input is not modified; the result shares its tensors. A current checkpoint comes back as a
    shallow copy. Besides the ``detkit`` block and ``state_dict``, a format-1 ``detector`` in
    ``hyper_parameters`` is migrated too. :func:`detkit.load_detector` and
    ``DetectionModule.on_load_checkpoint`` (a ``Trainer`` given ``ckpt_path`` with a module built from
    a current config) call it; Lightning's own ``load_from_checkpoint`` and the CLI's ``--ckpt_path``
    build the module from the checkpoint's stored hyper-parameters first, so they need format 2.

    Raises:
        ValueError: No ``detkit`` block, a format version this detkit does not know (for example
            one written by a newer detkit), or a format-1 detector config it cannot translate.
    """
    meta = checkpoint.get("detkit")
    if not isinstance(meta, dict):
        raise ValueError("not a detkit checkpoint: it has no 'detkit' block")
    version = meta.get("format_version")
    if version == CHECKPOINT_FORMAT_VERSION:
        return dict(checkpoint)
    if version != 1:
        newer = isinstance(version, int) and version > CHECKPOINT_FORMAT_VERSION
        raise ValueError(
            f"detkit checkpoint format {version!r} is not supported: this detkit reads formats 1 to "
            f"{CHECKPOINT_FORMAT_VERSION}" + (" (written by a newer detkit: upgrade to load it)" if newer else "")
        )
    migrated = dict(checkpoint)
    new_meta = dict(meta, format_version=CHECKPOINT_FORMAT_VERSION, pad_multiple=32)
    if meta.get("detector") is not None:
        new_meta["detector"] = _migrate_detector_config_v1(meta["detector"])
    migrated["detkit"] = new_meta
    migrated["state_dict"] = _migrate_state_dict_v1(checkpoint.get("state_dict", {}))
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict) and _is_v1_detector_config(hparams.get("detector")):
        migrated["hyper_parameters"] = dict(hparams, detector=_migrate_detector_config_v1(hparams["detector"]))
    return migrated


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a detkit checkpoint file safely (``torch.load(weights_only=True)``, tensors on the CPU).

    Checks only that it is one (a dict with a ``detkit`` block and a ``state_dict``); the format is
    :func:`migrate_checkpoint`'s business.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is truncated, not a torch file, holds objects a safe load refuses, or
            is not a detkit checkpoint; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # torch's text suggests weights_only=False: never show it
        found = re.search(r"GLOBAL ([\w.]+)", str(error))  # a class the safe unpickler refuses
        if found is None:
            raise ValueError(f"{path} is not a detkit checkpoint / cannot be read: truncated or not a torch file") from None
        raise ValueError(
            f"{path} is not a detkit checkpoint: it holds Python objects ({found.group(1)}) that a safe load "
            "refuses; detkit checkpoints hold only tensors and plain data"
        ) from None
    except Exception as error:  # noqa: BLE001 - zip, pickle and I/O layers each raise their own errors
        raise ValueError(
            f"{path} is not a detkit checkpoint / cannot be read: truncated or not a torch file ({type(error).__name__})"
        ) from None
    _check_checkpoint(checkpoint, str(path))
    return checkpoint


def _check_checkpoint(checkpoint: Any, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` unless ``checkpoint`` is a dict with a ``detkit`` block and a ``state_dict``."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{source} is not a detkit checkpoint: it holds a {type(checkpoint).__name__}, not a checkpoint dict")
    if not isinstance(checkpoint.get("detkit"), dict):
        raise ValueError(f"{source} is not a detkit checkpoint (no 'detkit' block)")
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(f"{source} is not a detkit checkpoint: it has no 'state_dict' of weights")


def load_detector_checkpoint(
    checkpoint: str | os.PathLike[str] | dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """A detkit checkpoint in the current format, and its detector's weights: the one read, migrate
    and strip-prefix sequence behind loading, fine-tuning and pruning.

    A path is read with :func:`read_checkpoint` (safely, tensors on the CPU); a dict (what
    ``torch.load`` gave) is checked the same way. Either is upgraded by :func:`migrate_checkpoint`
    (the input is not modified), and the weights under ``state_dict["detector.*"]`` are returned
    with that prefix stripped, ready for ``detector.load_state_dict``.

    Returns:
        ``(checkpoint, weights)``: the migrated checkpoint dict (``checkpoint["detkit"]`` is the
        current format's block, see the module's docstring) and the detector's ``state_dict``.

    Raises:
        FileNotFoundError: No file at the path.
        ValueError: Unreadable, not a detkit checkpoint, of a format this detkit cannot read, or
            without detector weights; the message names the file (``checkpoint dict`` for a dict).
    """
    if isinstance(checkpoint, dict):
        source = "checkpoint dict"
        _check_checkpoint(checkpoint, source)
    else:
        source = str(checkpoint)
        checkpoint = read_checkpoint(checkpoint)
    try:
        checkpoint = migrate_checkpoint(checkpoint)
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None
    weights = {k[len(_STATE_PREFIX) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(_STATE_PREFIX)}
    if not weights:
        raise ValueError(f"{source} holds no detector weights (no '{_STATE_PREFIX}*' entries in its state_dict)")
    return checkpoint, weights
