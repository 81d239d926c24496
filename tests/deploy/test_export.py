"""Tests for detkit.deploy: ONNX and TorchScript exports predict what the checkpoint predicts; bad input is named."""

import pytest
import torch
from tiny import SHAPE_NAMES, assert_same_detections, write_checkpoint

from detkit.commands import main as detkit_main
from detkit.data import ShapesReader
from detkit.deploy import DeployGraph, export_model, sidecar_path
from detkit.inference import Predictor, load_detector

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module)
THRESHOLD = 0.2  # well under 100 detections per image: the sets compared are complete


@pytest.fixture(scope="module")
def images():
    reader = ShapesReader(6, seed=99, max_shapes=3)
    return [reader[i][0] for i in range(len(reader))]


@pytest.mark.parametrize("input_size", [96, 128])
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_predicts_what_the_checkpoint_predicts(trained_shapes_module, images, tmp_path, fmt, input_size):
    model = Predictor(trained_shapes_module.detector, SHAPE_NAMES, input_size=input_size, pad_multiple=32)
    path = export_model(model, tmp_path / f"m.{fmt}", fmt, dynamic_batch=True, score_threshold=THRESHOLD)
    exported = load_detector(path)
    assert exported.class_names == SHAPE_NAMES and exported.letterbox.padded_size == model.letterbox.padded_size
    for batch in (images[:1], images[1:4]):  # batch 1 and 3
        expected = model.predict(batch, score_threshold=THRESHOLD)
        assert sum(len(e["scores"]) for e in expected) > 0
        assert_same_detections(exported.predict(batch), expected)
    # A higher threshold filters; a lower one than exported is refused.
    high = exported.predict(images[:3], score_threshold=0.5)
    assert_same_detections(high, model.predict(images[:3], score_threshold=0.5))
    with pytest.raises(ValueError, match="exported with score threshold"):
        exported.predict(images[0], score_threshold=0.1)


def test_static_batch_onnx_runs_any_number_of_images(trained_shapes_module, images, tmp_path):
    model = Predictor(trained_shapes_module.detector, SHAPE_NAMES, input_size=96, pad_multiple=32)
    exported = load_detector(export_model(model, tmp_path / "m.onnx", score_threshold=THRESHOLD))
    assert exported.batch == 1
    assert_same_detections(exported.predict(images[:3]), model.predict(images[:3], score_threshold=THRESHOLD))


def test_graph_outputs_are_padded_and_use_standard_onnx_ops(trained_shapes_module, tmp_path):
    import onnx

    model = Predictor(trained_shapes_module.detector, SHAPE_NAMES, input_size=96, pad_multiple=32)
    path = export_model(model, tmp_path / "m.onnx", dynamic_batch=True)
    graph = onnx.load(str(path))
    assert {o.domain for o in graph.opset_import} <= {"", "ai.onnx"} and "NonMaxSuppression" in {n.op_type for n in graph.graph.node}
    assert not list(tmp_path.glob("*.data")), "weights must be inside the .onnx file"
    boxes, scores, labels, count = DeployGraph(model.detector, 96)(torch.zeros(2, 3, 96, 96, dtype=torch.uint8))
    max_det = model.detector.head.decoder.max_detections
    assert boxes.shape == (2, max_det, 4) and scores.shape == labels.shape == (2, max_det) and count.shape == (2,)
    assert (labels[0, int(count[0]) :] == -1).all() and (scores[0, int(count[0]) :] == 0).all()


def test_load_detector_of_an_onnx_without_its_sidecar_names_the_files(trained_shapes_module, tmp_path):
    model = Predictor(trained_shapes_module.detector, SHAPE_NAMES, input_size=96, pad_multiple=32)
    path = export_model(model, tmp_path / "m.onnx")
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"m\.onnx has no m\.onnx\.json beside it"):
        load_detector(path)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(ValueError, match=r"m\.onnx\.json is not valid json"):
        load_detector(path)
    (tmp_path / "junk.onnx").write_bytes(b"garbage")
    sidecar_path(tmp_path / "junk.onnx").write_text('{"format_version": 1, "class_names": ["a"], "input_size": 64, "pad_multiple": 32}')
    with pytest.raises(ValueError, match=r"junk\.onnx is not a loadable ONNX model"):
        load_detector(tmp_path / "junk.onnx")


def test_detkit_export_command_writes_onnx_torchscript_and_int8(trained_shapes_module, images, tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    ckpt = write_checkpoint(trained_shapes_module, tmp_path / "run" / "checkpoints" / "best.ckpt")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, image in enumerate(ShapesReader(16, seed=3)):
        from PIL import Image

        Image.fromarray(image[0]).save(calib / f"{i}.png")
    assert detkit_main(["export", "--ckpt_path", str(ckpt), "--int8", "--calib-images", str(calib), "--dynamic-batch"]) == 0
    assert detkit_main(["export", "--ckpt_path", str(ckpt), "--format", "torchscript"]) == 0
    config = tmp_path / "data.yaml"  # calibration images from a config's training split
    import yaml
    from tiny import TINY_DETECTOR

    shapes = lambda n, seed: {"class_path": "detkit.data.ShapesReader", "init_args": {"num_images": n, "seed": seed}}  # noqa: E731
    config.write_text(yaml.safe_dump({"model": {"detector": TINY_DETECTOR},
                                      "data": {"train": shapes(8, 3), "val": shapes(2, 4), "input_size": 96}}))  # fmt: skip
    assert detkit_main(["export", "--ckpt_path", str(ckpt), "--int8", "--config", str(config), "--name", "from_config"]) == 0
    out = tmp_path / "run" / "export"  # beside checkpoints/, as explain/ is
    assert {p.name for p in out.iterdir()} == {
        "model.onnx", "model.onnx.json", "model.int8.onnx", "model.int8.onnx.json", "model.torchscript", "model.torchscript.json",
        "from_config.onnx", "from_config.onnx.json", "from_config.int8.onnx", "from_config.int8.onnx.json",
    }  # fmt: skip
    checkpoint = load_detector(ckpt)
    expected = checkpoint.predict(images[:3])
    assert_same_detections(load_detector(out / "model.torchscript").predict(images[:3]), expected)
    int8 = load_detector(out / "model.int8.onnx")
    assert int8.info["int8"] is True
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "NonMaxSuppression"} <= ops
    # int8 keeps the confident detections: the best one of each image has the same class and nearly the same box.
    from torchvision.ops import box_iou

    for got, want in zip(int8.predict(images[:3]), expected):
        assert got["labels"][0] == want["labels"][0]
        assert box_iou(got["boxes"][:1], want["boxes"][:1]).item() > 0.8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--format", "tflite"], "invalid choice: 'tflite'"),
        (["--format", "torchscript", "--int8"], "--int8 needs --format onnx"),
        (["--int8"], "--int8 needs --calib-images"),
    ],
)
def test_export_command_refuses_bad_options(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        detkit_main(["export", "--ckpt_path", str(tmp_path / "x.ckpt"), *argv])
    assert exit.value.code == 2 and message in capsys.readouterr().err


def test_export_command_names_a_bad_checkpoint(tmp_path, capsys):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    for path in (foreign, corrupt, tmp_path / "missing.ckpt"):
        assert detkit_main(["export", "--ckpt_path", str(path)]) == 2
        assert path.name in capsys.readouterr().err
    assert not (tmp_path / "export").exists()


def test_detkit_evaluate_scores_an_onnx_export_as_its_checkpoint(trained_shapes_module, tmp_path, capsys):
    import json

    import yaml
    from tiny import TINY_DETECTOR

    from detkit.commands.evaluate import main as evaluate_main

    ckpt = write_checkpoint(trained_shapes_module, tmp_path / "best.ckpt")
    model = load_detector(ckpt)
    onnx_path = export_model(model, tmp_path / "m.onnx", dynamic_batch=True)
    shapes = lambda n, seed: {"class_path": "detkit.data.ShapesReader", "init_args": {"num_images": n, "seed": seed, "max_shapes": 2}}  # noqa: E731
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"model": {"detector": TINY_DETECTOR}, "data": {
        "train": shapes(1, 0), "val": shapes(1, 1), "test": shapes(12, 99), "input_size": 64, "batch_size": 4, "num_workers": 0}}))  # fmt: skip
    stats = []
    for path in (ckpt, onnx_path):  # the config says 64 px; both letterbox at their own 96
        assert evaluate_main(["--ckpt_path", str(path), "--config", str(config)]) == 0
        stats.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert stats[0]["map"] > 0.2
    assert stats[1] == pytest.approx(stats[0], abs=1e-4)
