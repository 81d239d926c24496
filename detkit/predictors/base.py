"""What every predictor is: images as users have them in, detections in each image's own pixels out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from detkit.data.images import ImageLike, to_rgb_array
from detkit.ops.letterbox import Letterbox

if TYPE_CHECKING:
    from detkit.models import Detector

__all__ = ["BasePredictor", "ExportedModelError", "ImageInput", "predict_letterboxed"]

#: Every image form :meth:`BasePredictor.predict` takes (see :func:`~detkit.data.images.to_rgb_array`).
ImageInput = ImageLike


class ExportedModelError(ValueError):
    """The predictor runs an exported graph, and the task needs the PyTorch detector (export,
    pruning, feature maps, Grad-CAM): those take a ``detkit fit`` checkpoint."""


class BasePredictor(ABC):
    """A detector ready for images: what :func:`detkit.load_detector` returns for a checkpoint
    (:class:`~detkit.predictors.Predictor`, PyTorch) and for an export
    (:class:`~detkit.deploy.ExportedPredictor`: ONNX, TorchScript, int8) alike.

    Every predictor letterboxes as training did (``letterbox``), runs its network in
    :meth:`detect_letterboxed` / :meth:`predict_batch`, and maps boxes back to the images' own
    pixels in :meth:`predict` (the one implementation here, :func:`predict_letterboxed`).

    Attributes:
        class_names: One name per label.
        input_size: Side of the square letterbox the detector was trained at.
        pad_multiple: The letterbox pads its square to a multiple of this.
    """

    class_names: list[str]
    input_size: int
    pad_multiple: int

    @property
    def letterbox(self) -> Letterbox:
        """The letterbox of training: longest side to ``input_size``, padded to ``pad_multiple``."""
        return Letterbox(self.input_size, pad_multiple=self.pad_multiple)

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the network runs (exports: the CPU)."""

    @property
    @abstractmethod
    def detector(self) -> Detector:
        """The PyTorch :class:`~detkit.models.Detector` (eval mode).

        Raises:
            ExportedModelError: The predictor runs an exported graph (the message names the file).
        """

    @abstractmethod
    def detect_letterboxed(self, images: np.ndarray, score_threshold: float | None = None) -> list[dict[str, torch.Tensor]]:
        """Detections of letterboxed ``uint8 [B, S, S, 3]`` RGB images (stacked :attr:`letterbox`
        outputs), in letterboxed pixels: per image ``boxes FloatTensor[D, 4]`` xyxy, ``scores [D]``,
        ``labels Int64Tensor[D]``."""

    @abstractmethod
    def predict_batch(self, images: torch.Tensor, score_threshold: float | None = None) -> list[dict[str, torch.Tensor]]:
        """Detections of letterboxed ``FloatTensor[B, 3, S, S]`` images in ``[0, 1]`` (what the data
        loaders give; any device), in letterboxed pixels: per image ``boxes``, ``scores``, ``labels``
        as :meth:`detect_letterboxed` gives them, on :attr:`device`."""

    def predict(
        self, images: ImageInput | Sequence[ImageInput], score_threshold: float | None = None
    ) -> list[dict[str, Any]]:
        """Detect objects.

        Args:
            images: One image or a list: a file path, PIL image, ``HxWx3`` uint8 RGB numpy array
                or ``[3, H, W]`` tensor (uint8, or floats in ``[0, 1]``); grey, RGBA and 16-bit
                forms too. Every form gives the pixels :func:`~detkit.data.images.read_image` gives
                for the same file (see :func:`~detkit.data.images.to_rgb_array`).
            score_threshold: Keep detections scoring above this (default: the detector's; an
                export's can only be raised).

        Returns:
            One dict per image: ``boxes`` ``FloatTensor[D, 4]`` xyxy in the original image's
            pixels, ``scores`` ``[D]``, ``labels`` ``Int64Tensor[D]`` and ``names`` (list of str).
        """
        detect = lambda batch: self.detect_letterboxed(batch, score_threshold)  # noqa: E731
        return predict_letterboxed(images, self.letterbox, self.class_names, detect)


def predict_letterboxed(
    images: ImageInput | Sequence[ImageInput],
    letterbox: Letterbox,
    class_names: Sequence[str],
    detect: Callable[[np.ndarray], list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """What every predictor's ``predict`` does around its network: read each image
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
