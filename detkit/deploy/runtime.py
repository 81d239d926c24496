"""Predictors over exported models (onnxruntime, TorchScript): the :class:`~detkit.predictors.BasePredictor` of exports."""

from __future__ import annotations

import warnings
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from detkit.deploy.sidecar import read_sidecar
from detkit.predictors.base import BasePredictor, ExportedModelError

if TYPE_CHECKING:
    from detkit.models import Detector

__all__ = ["ExportedPredictor", "OnnxPredictor", "TorchScriptPredictor"]


class ExportedPredictor(BasePredictor):
    """An exported model with its sidecar: ``predict`` reads, letterboxes and maps boxes back exactly
    as :class:`~detkit.predictors.Predictor` does (the same :class:`~detkit.predictors.BasePredictor`
    code), only the network runs elsewhere, on the CPU.

    Attributes:
        path: The model file.
        info: Its sidecar json (:func:`~detkit.deploy.read_sidecar`).
        class_names, input_size, pad_multiple: From the sidecar json.
        score_threshold: The threshold the graph was exported with (``predict`` may raise it).
        batch: The graph's batch size, or ``None`` when any batch runs.
    """

    def __init__(self, path: str | Path) -> None:
        """Read the sidecar of ``path`` (errors name the file)."""
        self.path = Path(path)
        self.info = read_sidecar(self.path)
        self.class_names: list[str] = list(self.info["class_names"])
        self.input_size = int(self.info["input_size"])
        self.pad_multiple = int(self.info["pad_multiple"])
        self.score_threshold = self.info.get("score_threshold")
        batch = self.info.get("input", {}).get("shape", ["batch"])[0]
        self.batch = None if batch == "batch" else int(batch)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def detector(self) -> Detector:
        raise ExportedModelError(
            f"{self.path} is an exported model ({self.info.get('format', self.path.suffix.lstrip('.'))}): it has no "
            "PyTorch detector; export, pruning, feature maps and Grad-CAM take the detkit checkpoint (.ckpt) it came from"
        )

    @abstractmethod
    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The graph on ``uint8 [B, 3, S, S]``: ``(boxes, scores, labels, num_detections)``."""

    def detect_letterboxed(self, images: np.ndarray, score_threshold: float | None = None) -> list[dict[str, torch.Tensor]]:
        return self._detect_graph_input(images.transpose(0, 3, 1, 2), score_threshold)  # NHWC -> NCHW

    def _detect_graph_input(self, images: np.ndarray, score_threshold: float | None) -> list[dict[str, torch.Tensor]]:
        """Detections in letterboxed pixels for the graph's input, ``uint8 [B, 3, S, S]`` letterboxed
        images (run in slices of the graph's batch when it is fixed): ``boxes``, ``scores``, ``labels``."""
        exported = self.score_threshold
        if score_threshold is not None and exported is not None and score_threshold < exported:
            raise ValueError(
                f"{self.path} was exported with score threshold {exported}; export again with "
                f"--score-threshold {score_threshold} to see lower scores"
            )
        side = self.letterbox.padded_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, side, side):
            raise ValueError(
                f"{self.path} takes uint8 [B, 3, {side}, {side}] letterboxed images, got {images.dtype} {list(images.shape)}"
            )
        if len(images) == 0:
            return []
        step = self.batch or len(images)
        parts = [self.run(np.ascontiguousarray(images[i : i + step])) for i in range(0, len(images), step)]
        boxes, scores, labels, counts = (np.concatenate(arrays) for arrays in zip(*parts))
        results = []
        for b, s, lab, n in zip(boxes, scores, labels, counts.tolist()):
            found = {"boxes": torch.from_numpy(b[:n].copy()), "scores": torch.from_numpy(s[:n].copy()),
                     "labels": torch.from_numpy(lab[:n].astype(np.int64))}  # fmt: skip
            if score_threshold is not None:
                above = found["scores"] > score_threshold
                found = {key: value[above] for key, value in found.items()}
            results.append(found)
        return results

    def predict_batch(self, images: torch.Tensor, score_threshold: float | None = None) -> list[dict[str, torch.Tensor]]:
        # The data loaders' floats are uint8 / 255: the conversion back is exact.
        # numpy, not torch: a torch op here wakes its OpenMP pool, whose spinning threads then
        # halve onnxruntime's speed on a 2-core machine (measured: 3.9 -> 7.9 ms per call).
        uint8 = np.clip(np.rint(images.detach().cpu().numpy() * 255), 0, 255).astype(np.uint8)
        return self._detect_graph_input(uint8, score_threshold)


class OnnxPredictor(ExportedPredictor):
    """An ONNX export run by onnxruntime on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        """Args:
        path: The ``.onnx`` file (its ``.onnx.json`` sidecar beside it).
        threads: onnxruntime intra-op threads (default: onnxruntime's choice, the physical cores).
        """
        super().__init__(path)
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError("running ONNX models needs onnxruntime: pip install 'detkit[deploy]'") from error
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise ValueError(f"{self.path} is not a loadable ONNX model: {error}") from None

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tuple(self.session.run(None, {"images": images}))  # type: ignore[return-value]


class TorchScriptPredictor(ExportedPredictor):
    """A TorchScript export run by ``torch.jit`` (CPU). torch marks TorchScript deprecated (its
    ``FutureWarning`` on load is silenced here); ONNX is the export to build on."""

    def __init__(self, path: str | Path) -> None:
        """Args:
        path: The ``.torchscript`` file (its ``.torchscript.json`` sidecar beside it).
        """
        super().__init__(path)
        import detkit.ops.nms  # noqa: F401  registers detkit::nms_per_image, which the graph calls

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=FutureWarning)
                self.module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except RuntimeError as error:
            raise ValueError(f"{self.path} is not a loadable TorchScript model: {error}") from None

    @torch.inference_mode()
    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tuple(t.numpy() for t in self.module(torch.from_numpy(images)))  # type: ignore[return-value]
