"""detkit: object detection on PyTorch Lightning (backbone + FPN + FCOS-style head, COCO mAP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["BasePredictor", "load_detector", "Predictor", "__version__"]

if TYPE_CHECKING:
    from detkit.inference import BasePredictor, Predictor, load_detector


def __getattr__(name: str) -> Any:
    # Lazy, so `import detkit.ops` or `detkit.models` does not pay for the inference stack.
    if name in ("BasePredictor", "load_detector", "Predictor"):
        from detkit import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'detkit' has no attribute {name!r}")
