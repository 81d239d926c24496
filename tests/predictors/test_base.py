"""Tests for detkit.predictors: checkpoint and export predictors are one type, with one predict and typed gaps."""

import json

import numpy as np
import pytest
import torch
from torch import nn

import detkit
from detkit.deploy import ExportedPredictor, export_model, sidecar_path
from detkit.pictures.explain import feature_maps
from detkit.predictors import BasePredictor, ExportedModelError, Predictor


def _bright_box(image: np.ndarray) -> list[float]:
    """xyxy of the bright pixels of one ``[S, S]`` channel mean."""
    ys, xs = np.nonzero(image > 127)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


class BrightBoxDetector(nn.Module):
    """Stands in for a PyTorch detector: 'detects' the bright pixels of each letterboxed input."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def predict_batch(self, images, score_threshold=None):
        boxes = [_bright_box((image.mean(0) * 255).numpy()) for image in images]
        return [{"boxes": torch.tensor([box], dtype=torch.float32), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([0])} for box in boxes]  # fmt: skip


class BrightBoxGraph(ExportedPredictor):
    """Stands in for an exported graph: the same boxes, as padded ``(boxes, scores, labels, count)`` arrays."""

    def run(self, images):
        boxes = np.zeros((len(images), 5, 4), np.float32)
        boxes[:, 0] = [_bright_box(image.mean(0)) for image in images]
        scores = np.zeros((len(images), 5), np.float32)
        scores[:, 0] = 0.9
        labels = np.full((len(images), 5), -1, np.int64)
        labels[:, 0] = 0
        return boxes, scores, labels, np.ones(len(images), np.int64)


def _image_with_box() -> np.ndarray:
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    image[20:60, 50:90] = 255  # box (50, 20, 90, 60)
    return image


@pytest.fixture()
def exported(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    info = {"format_version": 1, "format": "onnx", "class_names": ["square"], "input_size": 100, "pad_multiple": 32,
            "input": {"shape": ["batch", 3, 128, 128]}, "score_threshold": None}  # fmt: skip
    sidecar_path(path).write_text(json.dumps(info))
    return BrightBoxGraph(path)


def test_checkpoint_and_export_predictors_are_one_type_with_the_same_results(exported):
    checkpoint = Predictor(BrightBoxDetector(), ["square"], input_size=100)
    for predictor in (checkpoint, exported):
        assert isinstance(predictor, BasePredictor)
        assert predictor.device == torch.device("cpu") and predictor.letterbox.padded_size == 128
        [result] = predictor.predict(_image_with_box())
        torch.testing.assert_close(result["boxes"], torch.tensor([[50.0, 20.0, 90.0, 60.0]]))
        assert result["names"] == ["square"]
        [found] = predictor.predict_batch(torch.from_numpy(predictor.letterbox(_image_with_box())[0]).permute(2, 0, 1)[None] / 255)
        torch.testing.assert_close(found["boxes"], torch.tensor([[25.0, 10.0, 45.0, 30.0]]))
    assert isinstance(checkpoint.detector, BrightBoxDetector)
    assert dict(checkpoint.named_children()) == {"detector": checkpoint.detector}  # state_dict keys: detector.*


def test_the_detector_of_an_export_is_a_typed_error_naming_the_file(exported, tmp_path):
    with pytest.raises(ExportedModelError, match=r"model\.onnx is an exported model \(onnx\)"):
        exported.detector
    with pytest.raises(ExportedModelError, match="detkit checkpoint"):
        feature_maps(exported, _image_with_box())
    with pytest.raises(ExportedModelError):
        export_model(exported, tmp_path / "again" / "model.onnx")
    assert not (tmp_path / "again").exists()
    assert issubclass(ExportedModelError, ValueError)  # the commands report it as bad input


def test_every_predictor_implements_the_whole_interface():
    class Partial(BasePredictor):
        def predict_batch(self, images, score_threshold=None):
            return []

    with pytest.raises(TypeError, match="abstract"):
        Partial()
    assert detkit.BasePredictor is BasePredictor and detkit.Predictor is Predictor
