"""The json sidecar beside an exported model: where it lies and reading it back, checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["SIDECAR_VERSION", "read_sidecar", "sidecar_path"]

#: Version of the sidecar json's layout; readers refuse newer ones.
SIDECAR_VERSION = 1


def sidecar_path(model_path: str | Path) -> Path:
    """The json beside an exported model: ``model.onnx`` -> ``model.onnx.json``."""
    path = Path(model_path)
    return path.with_name(path.name + ".json")


def read_sidecar(model_path: str | Path) -> dict[str, Any]:
    """The sidecar json of an exported model, checked; errors name the files."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no exported model at {model_path}")
    side = sidecar_path(model_path)
    if not side.is_file():
        raise FileNotFoundError(
            f"{model_path} has no {side.name} beside it: detkit export writes the class names, input size and "
            "letterbox there; copy it along with the model (or export again)"
        )
    try:
        info = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{side} is not valid json: {error}") from None
    if not isinstance(info, dict):
        raise ValueError(f"{side} is not a detkit export sidecar (a json object)")
    missing = [key for key in ("format_version", "class_names", "input_size", "pad_multiple") if key not in info]
    if missing:
        raise ValueError(f"{side} lacks {', '.join(missing)}: not a detkit export sidecar")
    if not all(isinstance(info[key], int) for key in ("format_version", "input_size", "pad_multiple")):
        raise ValueError(f"{side}: format_version, input_size and pad_multiple must be integers")
    if info["format_version"] > SIDECAR_VERSION:
        raise ValueError(f"{side} has format version {info['format_version']}; this detkit reads up to {SIDECAR_VERSION}")
    return info
