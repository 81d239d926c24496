"""int8 static quantization of an exported ONNX detector (onnxruntime, QDQ, convolutions only)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.images import ImageLike, to_rgb_array
from detkit.deploy.sidecar import read_sidecar, sidecar_path
from detkit.ops.letterbox import Letterbox

__all__ = ["quantize_int8"]


def _calibration_batches(images: Sequence[ImageLike], letterbox: Letterbox) -> Iterator[dict[str, np.ndarray]]:
    """Each image letterboxed as prediction does it: ``{"images": uint8 [1, 3, S, S]}``."""
    for image in images:
        padded, _ = letterbox(to_rgb_array(image))
        yield {"images": np.ascontiguousarray(padded.transpose(2, 0, 1)[None])}


#: Quantized when they lie between convolutions: the activations and residual additions of the
#: network, so its tensors stay int8 from one convolution to the next.
BETWEEN_CONVS = ("Relu", "Clip", "Add")


def calibration_sample(images: Sequence[Any], count: int = 100) -> list[Any]:
    """Up to ``count`` items spread evenly over ``images`` (paths, or a reader's ``(image, target)``
    items, whose images are then taken): the calibration set of :func:`quantize_int8`."""
    picked = [images[i] for i in range(0, len(images), max(1, len(images) // count))][:count]
    return [item[0] if isinstance(item, tuple) else item for item in picked]


def network_nodes(model: Any) -> list[str]:
    """Names of the nodes to quantize: every ``Conv``, and every :data:`BETWEEN_CONVS` node with a
    ``Conv`` downstream (inside the network). Nodes after the last convolutions (decoding, scores,
    NMS) are left out: they stay float."""
    producer = {output: node for node in model.graph.node for output in node.output}
    upstream_of_conv: set[str] = set()
    stack = [node for node in model.graph.node if node.op_type == "Conv"]
    while stack:  # walk back from every convolution through its inputs' producers
        node = stack.pop()
        for name in node.input:
            parent = producer.get(name)
            if parent is not None and parent.name not in upstream_of_conv:
                upstream_of_conv.add(parent.name)
                stack.append(parent)
    return [n.name for n in model.graph.node if n.op_type == "Conv" or (n.op_type in BETWEEN_CONVS and n.name in upstream_of_conv)]


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration_images: Sequence[ImageLike]) -> Path:
    """Write an int8 copy of an ONNX export: static QDQ quantization of every ``Conv``.

    Weights are int8 per output channel, activations uint8 per tensor with ranges observed
    (min/max) on ``calibration_images`` (letterboxed exactly as ``predict`` does; 50-200 training
    images are typical). Besides the convolutions, the ReLU / clip activations and residual
    additions *between* convolutions are quantized (:func:`network_nodes`): with convolutions
    alone, every convolution's output is converted back to float and requantized for the next one,
    and on a MobileNetV2 detector those conversions took 46 % of the time, making int8 slower than
    fp32 (measured in ``docs/deployment.md``). Normalisation layers (GroupNorm), decoding and NMS
    stay float; the outputs and sidecar are those of the fp32 export (``"int8": true`` added).

    Args:
        fp32_path: A ``.onnx`` written by :func:`~detkit.deploy.export_model` (any batch setting).
        out_path: The int8 ``.onnx`` to write (its sidecar beside it).
        calibration_images: Paths, arrays or PIL images (any form ``predict`` takes).
    """
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as error:
        raise ImportError("int8 quantization needs onnxruntime: pip install 'detkit[deploy]'") from error
    fp32_path, out_path = Path(fp32_path), Path(out_path)
    info = read_sidecar(fp32_path)
    if info.get("format") != "onnx" or info.get("int8"):
        raise ValueError(f"{fp32_path} is not an fp32 ONNX export (its sidecar says {info.get('format')}, int8={info.get('int8')})")
    if not calibration_images:
        raise ValueError("int8 calibration needs at least one image")
    letterbox = Letterbox(int(info["input_size"]), pad_multiple=int(info["pad_multiple"]))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = _calibration_batches(calibration_images, letterbox)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)  # shapes + folding
        import onnx

        nodes = network_nodes(onnx.load(str(prepared)))
        quantize_static(
            str(prepared), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", *BETWEEN_CONVS], nodes_to_quantize=nodes,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # fmt: skip
    sidecar_path(out_path).write_text(json.dumps({**info, "int8": True}, indent=2))
    return out_path
