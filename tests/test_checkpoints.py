"""Tests for detkit.checkpoints: reading checkpoint files safely, migrating format 1 to the composed format 2."""

import argparse
import copy
import re
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from detkit.checkpoints import CHECKPOINT_FORMAT_VERSION, load_detector_checkpoint, migrate_checkpoint, read_checkpoint
from detkit.config import instantiate
from detkit.models import FPN, Detector, DenseDecoder, FCOSAssigner, FCOSHead, FCOSLoss

REFERENCE = Path(__file__).parent / "models" / "data" / "fcos_format1_reference.pt"


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, map_location="cpu", weights_only=True)


def build_detector(config, num_classes):
    """The detector a checkpoint's ``detector`` config describes, built as detkit builds every config."""
    return instantiate(Callable[[int], Detector], config)(num_classes)


def _format1_checkpoint(reference):
    """A Lightning checkpoint dict as detkit wrote it in format 1, from the reference fixture."""
    init_args = copy.deepcopy(reference["detector_init_args"])
    detector_config = {"class_path": "detkit.models.Detector", "init_args": init_args}
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {f"detector.{k}": v for k, v in reference["state_dict"].items()},
        "hyper_parameters": {"detector": copy.deepcopy(detector_config), "num_classes": 3},
        "detkit": {
            "format_version": 1,
            "num_classes": 3,
            "class_names": ["circle", "square", "triangle"],
            "detector": detector_config,
            "input_size": 128,
        },
    }


def _outputs(detector, reference):
    images = reference["images_uint8"].float() / 255
    detector.eval()
    detections = detector.predict_batch(images)
    detector.train()
    return detector.loss(images, reference["targets"]), detections


def test_format1_file_migrates_to_identical_detector(tmp_path, reference):
    path = tmp_path / "format1.ckpt"
    torch.save(_format1_checkpoint(reference), path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    original = copy.deepcopy(checkpoint)
    migrated = migrate_checkpoint(checkpoint)

    assert CHECKPOINT_FORMAT_VERSION == 2
    meta = migrated["detkit"]
    assert meta["format_version"] == 2
    assert meta["class_names"] == ["circle", "square", "triangle"] and meta["input_size"] == 128
    init_args = meta["detector"]["init_args"]
    assert set(init_args) == {"backbone", "neck", "head", "image_mean", "image_std", "pad_to_stride", "channels_last"}
    assert init_args["neck"]["init_args"] == {"out_channels": 16, "extra_levels": 1}
    assert init_args["head"]["init_args"]["decoder"]["init_args"]["score_threshold"] == 0.01
    assert init_args["pad_to_stride"] is False and init_args["channels_last"] is False
    assert migrated["hyper_parameters"]["detector"] == meta["detector"]
    assert migrated["hyper_parameters"]["num_classes"] == 3 and migrated["epoch"] == 3
    # Weights: the FPN moved under the neck; backbone and head keys are unchanged.
    keys = set(migrated["state_dict"])
    assert "detector.neck.fpn.inner_blocks.0.0.weight" in keys and not any(k.startswith("detector.fpn.") for k in keys)
    assert {
        "detector.head.cls_tower.0.conv.weight", "detector.head.scales", "detector.backbone.stem.conv.weight"
    } <= keys
    assert len(keys) == len(checkpoint["state_dict"])
    # The input is left as it was.
    assert checkpoint["detkit"] == original["detkit"] and set(checkpoint["state_dict"]) == set(original["state_dict"])

    detector = build_detector(meta["detector"], meta["num_classes"])
    detector.load_state_dict({k.removeprefix("detector."): v for k, v in migrated["state_dict"].items()})
    losses, detections = _outputs(detector, reference)
    for key, value in reference["losses"].items():
        torch.testing.assert_close(losses[key].detach(), value, rtol=0, atol=1e-5)
    for got, expected in zip(detections, reference["detections"]):
        assert torch.equal(got["labels"], expected["labels"])
        torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=1e-5)
        torch.testing.assert_close(got["scores"], expected["scores"], rtol=0, atol=1e-5)


def test_format1_defaults_are_written_out():
    """A format-1 config that omits arguments meant format 1's defaults: the migration spells them out."""
    backbone = {"class_path": "detkit.models.PlainConvBackbone", "init_args": {"widths": [8, 8, 16, 16]}}
    checkpoint = {
        "detkit": {"format_version": 1, "num_classes": 2, "class_names": ["a", "b"], "input_size": 64,
                   "detector": {"class_path": "detkit.models.detector.Detector", "init_args": {"backbone": backbone}}},
        "state_dict": {},
    }
    config = migrate_checkpoint(checkpoint)["detkit"]["detector"]
    head = config["init_args"]["head"]["init_args"]
    assert config["init_args"]["neck"]["init_args"] == {"out_channels": 256, "extra_levels": 2}
    assert head["num_convs"] == 4 and head["norm"] == "group" and head["prior_prob"] == 0.01
    assert head["assigner"]["init_args"] == {"center_sampling_radius": 1.5, "size_multiplier": 8.0}
    assert head["loss"]["init_args"]["quality"] == "centerness" and head["loss"]["init_args"]["focal_alpha"] == 0.25
    assert head["decoder"]["init_args"] == {"score_threshold": 0.05, "topk_per_level": 1000, "nms_iou": 0.6,
                                            "max_detections": 100}
    detector = build_detector(config, 2)
    assert isinstance(detector.neck, FPN) and [f.stride for f in detector.feature_info] == [4, 8, 16, 32, 64]
    assert isinstance(detector.head, FCOSHead) and len(detector.head.cls_tower) == 4
    assert isinstance(detector.head.assigner, FCOSAssigner) and isinstance(detector.head.criterion, FCOSLoss)
    assert isinstance(detector.head.decoder, DenseDecoder) and detector.head.decoder.nms_iou == 0.6
    assert detector.channels_last and not detector.pad_to_stride


def test_current_format_passes_and_unknown_formats_raise(reference):
    migrated = migrate_checkpoint(_format1_checkpoint(reference))
    again = migrate_checkpoint(migrated)
    assert again == migrated and again is not migrated
    with pytest.raises(ValueError, match="format 3 is not supported.*newer detkit"):
        migrate_checkpoint({"detkit": {"format_version": 3}, "state_dict": {}})
    with pytest.raises(ValueError, match="format None"):
        migrate_checkpoint({"detkit": {}, "state_dict": {}})
    with pytest.raises(ValueError, match="no 'detkit' block"):
        migrate_checkpoint({"state_dict": {}})


def test_format1_without_detector_config_or_with_unknown_arguments(reference):
    checkpoint = _format1_checkpoint(reference)
    checkpoint["detkit"]["detector"] = None  # a module built in Python with objects
    migrated = migrate_checkpoint(checkpoint)
    assert migrated["detkit"]["detector"] is None and migrated["detkit"]["format_version"] == 2
    assert "detector.neck.fpn.layer_blocks.0.0.weight" in migrated["state_dict"]
    checkpoint = _format1_checkpoint(reference)
    checkpoint["detkit"]["detector"]["init_args"]["fpn_levels"] = 3
    with pytest.raises(ValueError, match="unknown arguments.*fpn_levels"):
        migrate_checkpoint(checkpoint)


def test_load_detector_reads_format1_file(tmp_path, reference):
    """Through the public loader (needs detkit.load_detector to call migrate_checkpoint)."""
    import detkit

    path = tmp_path / "format1.ckpt"
    torch.save(_format1_checkpoint(reference), path)
    predictor = detkit.load_detector(path)
    assert predictor.class_names == ["circle", "square", "triangle"] and predictor.input_size == 128
    losses, detections = _outputs(predictor.detector, reference)
    for key, value in reference["losses"].items():
        torch.testing.assert_close(losses[key].detach(), value, rtol=0, atol=1e-5)
    for got, expected in zip(detections, reference["detections"]):
        assert torch.equal(got["labels"], expected["labels"])
        torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=1e-5)


def test_shapes_config_is_the_format1_shapes_model():
    """configs/shapes.yaml's composed detector is the flat format-1 one it replaced, number for number."""
    import yaml

    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "shapes.yaml").read_text())["model"]["detector"]
    format1 = {
        "class_path": "detkit.models.Detector",
        "init_args": {
            "backbone": {
                "class_path": "detkit.models.PlainConvBackbone",
                "init_args": {"widths": [16, 32, 64, 96, 128], "kernel_size": 3, "norm": "batch", "activation": "relu"},
            },
            "fpn_channels": 64, "fpn_extra_levels": 0, "head_convs": 2, "head_norm": "group",
        },
    }
    checkpoint = {"detkit": {"format_version": 1, "num_classes": 3, "detector": format1}, "state_dict": {}}
    old = build_detector(migrate_checkpoint(checkpoint)["detkit"]["detector"], 3).eval()
    new = build_detector(config, 3).eval()
    state = old.state_dict()
    assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in state.items()}
    new.load_state_dict(state)
    images = torch.rand(2, 3, 160, 160)  # shapes.yaml's input size, a multiple of the stride 32
    for key, value in old(images).items():
        assert torch.equal(new(images)[key], value), key
    decoder_args = ("score_threshold", "topk_per_level", "nms_iou", "max_detections")
    assert [getattr(new.head.decoder, a) for a in decoder_args] == [getattr(old.head.decoder, a) for a in decoder_args]
    assert (new.head.assigner.center_sampling_radius, new.head.assigner.size_multiplier) == (1.5, 8.0)


def test_module_loading_a_format1_checkpoint_migrates_its_weights(reference):
    """A Trainer given ``ckpt_path`` calls ``on_load_checkpoint`` before loading the weights."""
    from detkit.training.module import DetectionModule

    checkpoint = _format1_checkpoint(reference)
    detector_config = migrate_checkpoint(checkpoint)["detkit"]["detector"]
    module = DetectionModule.from_config({"detector": detector_config, "num_classes": 3})
    with pytest.raises(RuntimeError, match="neck"):  # without the hook the weights do not fit
        module.load_state_dict(copy.deepcopy(checkpoint)["state_dict"])
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    assert checkpoint["detkit"]["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert checkpoint["detkit"]["pad_multiple"] == 32  # format 1 always padded to 32
    for name, value in reference["state_dict"].items():
        assert torch.equal(module.detector.state_dict()[name.replace("fpn.", "neck.", 1)], value), name


# --- files that are not (readable) detkit checkpoints -------------------------------------------


def _real_checkpoint(path: Path, reference) -> bytes:
    torch.save(_format1_checkpoint(reference), path)
    return path.read_bytes()


UNREADABLE = "not a detkit checkpoint / cannot be read: truncated or not a torch file"
BAD_CHECKPOINTS = {
    "first_half.ckpt": (lambda path, ref: _first_half(_real_checkpoint(path, ref)), UNREADABLE),
    "last_byte_missing.ckpt": (lambda path, ref: _real_checkpoint(path, ref)[:-1], UNREADABLE),
    "empty.ckpt": (lambda path, ref: b"", UNREADABLE),
    "notes.ckpt": (lambda path, ref: b"epoch: 3\nmap: 0.41\n", UNREADABLE),
    "noise.ckpt": (lambda path, ref: bytes(range(256)) * 8, UNREADABLE),
    "namespace.ckpt": (lambda path, ref: _saved(path, {"args": argparse.Namespace(lr=0.1)}),
                       r"holds Python objects \(argparse.Namespace\) that a safe load refuses"),
    "list.ckpt": (lambda path, ref: _saved(path, [1, 2, 3]), "not a detkit checkpoint: it holds a list"),
    "plain_weights.ckpt": (lambda path, ref: _saved(path, {"state_dict": {"w": torch.zeros(2)}}),
                           r"not a detkit checkpoint \(no 'detkit' block\)"),
    "no_state_dict.ckpt": (lambda path, ref: _saved(path, {"detkit": _format1_checkpoint(ref)["detkit"]}), "no 'state_dict'"),
}  # fmt: skip


def _first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _saved(path: Path, obj) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()


@pytest.mark.parametrize("name", sorted(BAD_CHECKPOINTS))
def test_load_detector_names_the_file_it_cannot_use(tmp_path, reference, name):
    import detkit

    make, reason = BAD_CHECKPOINTS[name]
    path = tmp_path / name
    data = make(tmp_path / "source.ckpt", reference)
    path.write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + reason) as error:
        detkit.load_detector(path)
    shown = "".join(traceback.format_exception(error.value))  # what the user sees, chained errors included
    assert "weights_only" not in shown


def test_read_checkpoint_reads_a_real_checkpoint_and_a_missing_one_raises(tmp_path, reference):
    _real_checkpoint(tmp_path / "real.ckpt", reference)
    checkpoint = read_checkpoint(tmp_path / "real.ckpt")
    assert checkpoint["detkit"]["format_version"] == 1 and checkpoint["state_dict"]
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_load_detector_checkpoint_reads_migrates_and_strips_the_prefix(tmp_path, reference):
    path = tmp_path / "format1.ckpt"
    torch.save(_format1_checkpoint(reference), path)
    checkpoint, weights = load_detector_checkpoint(path)
    assert checkpoint["detkit"]["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert set(weights) == {("neck." + k[4:] if k.startswith("fpn.") else k) for k in reference["state_dict"]}
    build_detector(checkpoint["detkit"]["detector"], 3).load_state_dict(weights)  # strict: every weight fits
    given = _format1_checkpoint(reference)
    _, from_dict = load_detector_checkpoint(given)
    assert from_dict.keys() == weights.keys() and given["detkit"]["format_version"] == 1  # the input stays as it was
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_detector_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match=r"checkpoint dict is not a detkit checkpoint \(no 'detkit' block\)"):
        load_detector_checkpoint({"state_dict": {"detector.x": torch.zeros(1)}})
    with pytest.raises(ValueError, match="checkpoint dict: detkit checkpoint format 999"):
        load_detector_checkpoint({"state_dict": {}, "detkit": {"format_version": 999}})
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "detkit": {"format_version": 2}}, tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match=r"other\.ckpt holds no detector weights"):
        load_detector_checkpoint(tmp_path / "other.ckpt")


def test_load_detector_names_the_file_whose_weights_do_not_fit(tmp_path, reference):
    import detkit

    checkpoint = _format1_checkpoint(reference)
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if "head" not in k}
    torch.save(checkpoint, tmp_path / "headless.ckpt")
    with pytest.raises(ValueError, match=r"(?s)headless.ckpt: its weights do not fit its detector config.*Missing key.*head"):
        detkit.load_detector(tmp_path / "headless.ckpt")
