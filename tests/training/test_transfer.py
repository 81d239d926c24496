"""Tests for detkit.training.transfer: fine-tuning a detector from a checkpoint trained on other classes."""

import copy
import warnings
from pathlib import Path

import pytest
import torch

from detkit.checkpoints import CHECKPOINT_FORMAT_VERSION
from detkit.inference import instantiate_detector
from detkit.training.transfer import LoadReport, load_detector_weights

REFERENCE = Path(__file__).parents[1] / "models" / "data" / "fcos_format1_reference.pt"

CONFIG = {
    "class_path": "detkit.models.Detector",
    "init_args": {
        "backbone": {"class_path": "detkit.models.PlainConvBackbone", "init_args": {"widths": [8, 8, 16, 16, 16]}},
        "neck": {"class_path": "detkit.models.FPN", "init_args": {"out_channels": 16, "extra_levels": 1}},
        "head": {"class_path": "detkit.models.FCOSHead", "init_args": {"num_convs": 2, "norm": "group"}},
        "channels_last": False,
    },
}
CLASSIFIER = {"head.cls_logits.weight", "head.cls_logits.bias"}


def _checkpoint(detector, class_names, config=CONFIG):
    """A checkpoint dict as ``DetectionModule`` writes it (weights under ``detector.``, a ``detkit`` block)."""
    return {
        "epoch": 1,
        "state_dict": {f"detector.{k}": v for k, v in detector.state_dict().items()},
        "detkit": {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "num_classes": len(class_names),
            "class_names": class_names,
            "detector": config,
            "input_size": 64,
            "pad_multiple": 32,
        },
    }


def _trained(num_classes):
    """A detector whose every tensor differs from a fresh one (stands in for trained weights)."""
    torch.manual_seed(1)
    detector = instantiate_detector(CONFIG, num_classes)
    with torch.no_grad():
        for tensor in detector.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.randn_like(tensor))
    return detector


def test_three_class_checkpoint_into_one_class_detector(tmp_path):
    source = _trained(3)
    path = tmp_path / "three.ckpt"
    torch.save(_checkpoint(source, ["cat", "dog", "fox"]), path)
    torch.manual_seed(2)
    target = instantiate_detector(CONFIG, 1)
    initial = copy.deepcopy(target.state_dict())

    with pytest.warns(UserWarning, match="head.cls_logits.weight") as caught:
        report = load_detector_weights(target, path)

    assert isinstance(report, LoadReport)
    assert set(report.mismatched) == CLASSIFIER and set(report.not_loaded) == CLASSIFIER
    assert report.mismatched["head.cls_logits.weight"] == ((3, 16, 3, 3), (1, 16, 3, 3))
    assert not report.missing and not report.unused and not report.complete
    assert report.class_names == ["cat", "dog", "fox"]
    loaded = target.state_dict()
    expected = source.state_dict()
    assert set(report.loaded) == set(loaded) - CLASSIFIER
    for name in report.loaded:  # backbone, neck, towers, box and quality branches, scales
        assert torch.equal(loaded[name], expected[name]), name
    assert any(n.startswith("backbone.") for n in report.loaded) and any(n.startswith("neck.") for n in report.loaded)
    assert any(n.startswith("head.cls_tower.") for n in report.loaded)
    for name in CLASSIFIER:  # kept as the 1-class detector initialised it (prior-probability bias)
        assert torch.equal(loaded[name], initial[name]), name
    text = str(report)
    assert str(caught[0].message) == text
    assert f"loaded {len(loaded) - 2} of {len(loaded)}" in text and "cat, dog, fox" in text
    assert "head.cls_logits.weight: checkpoint [3, 16, 3, 3] != detector [1, 16, 3, 3]" in text
    assert "head.cls_logits.bias" in text
    target.eval()
    [detections] = target.predict_batch(torch.rand(1, 3, 128, 128))
    assert detections["labels"].le(0).all()


def test_same_classes_loads_everything_silently():
    source = _trained(2)
    target = instantiate_detector(CONFIG, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = load_detector_weights(target, _checkpoint(source, ["a", "b"]))
    assert report.complete and not report.unused and len(report.loaded) == len(target.state_dict())
    images = torch.rand(2, 3, 64, 64)
    source.eval(), target.eval()
    for key, value in source(images).items():
        torch.testing.assert_close(target(images)[key], value)


def test_missing_and_unused_tensors_are_reported():
    source = _trained(3)
    config = copy.deepcopy(CONFIG)
    config["init_args"]["head"]["init_args"]["num_convs"] = 3  # one more conv per tower
    target = instantiate_detector(config, 3)
    checkpoint = _checkpoint(source, ["a", "b", "c"])
    checkpoint["state_dict"]["detector.extra.weight"] = torch.zeros(2)
    with pytest.warns(UserWarning, match="absent from the checkpoint"):
        report = load_detector_weights(target, checkpoint)
    assert report.missing and all(n.startswith(("head.cls_tower.", "head.box_tower.")) for n in report.missing)
    assert "extra.weight" in report.unused and not report.mismatched
    assert "head.cls_logits.weight" in report.loaded
    assert "extra.weight" in str(report)


def test_format1_checkpoint_is_migrated_before_matching():
    reference = torch.load(REFERENCE, map_location="cpu", weights_only=True)
    v1_config = {"class_path": "detkit.models.Detector", "init_args": copy.deepcopy(reference["detector_init_args"])}
    checkpoint = {
        "state_dict": {f"detector.{k}": v for k, v in reference["state_dict"].items()},
        "detkit": {"format_version": 1, "num_classes": 3, "class_names": ["circle", "square", "triangle"],
                   "detector": v1_config, "input_size": 128},
    }  # fmt: skip
    target = instantiate_detector(CONFIG, 1)  # the same parts as the reference, composed (format 2)
    with pytest.warns(UserWarning):
        report = load_detector_weights(target, checkpoint)
    assert set(report.not_loaded) == CLASSIFIER and not report.unused
    assert any(n.startswith("neck.") for n in report.loaded)
    loaded = target.state_dict()
    for name in report.loaded:  # format 1 called the neck "fpn"
        old = "fpn." + name[len("neck.") :] if name.startswith("neck.") else name
        assert torch.equal(loaded[name], reference["state_dict"][old]), name


def test_errors(tmp_path):
    target = instantiate_detector(CONFIG, 1)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_detector_weights(target, tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="not a detkit checkpoint"):
        load_detector_weights(target, {"state_dict": {"detector.x": torch.zeros(1)}})
    with pytest.raises(ValueError, match="format 999"):
        load_detector_weights(target, {"state_dict": {}, "detkit": {"format_version": 999}})
    with pytest.raises(ValueError, match="no detector weights"):
        load_detector_weights(target, {"state_dict": {"model.x": torch.zeros(1)}, "detkit": {"format_version": 2}})
    foreign = _checkpoint(target, ["a"])
    foreign["state_dict"] = {"detector.something.else": torch.zeros(3)}
    with pytest.raises(ValueError, match="no tensor"):
        load_detector_weights(target, foreign)


def test_initialising_from_a_truncated_checkpoint_names_it(tmp_path):
    path = tmp_path / "three.ckpt"
    torch.save(_checkpoint(_trained(3), ["cat", "dog", "fox"]), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"three\.ckpt is not a detkit checkpoint / cannot be read: truncated"):
        load_detector_weights(instantiate_detector(CONFIG, 1), path)


@pytest.mark.parametrize("model, overlays", [("fcos_resnet50_fpn", ["coco_fcos.yaml"]),
                                             ("retinanet_resnet50_fpn_v2", ["coco_fcos.yaml", "coco_retinanet.yaml"])])
def test_torchvision_coco_detector_fine_tunes_saves_loads_and_exports(tmp_path, model, overlays):
    """The shipped COCO configs, with a local torchvision state dict (random, seeded) for the weights:
    `detkit fit` on 3 other classes, then load_detector and `detkit export` on what it saved."""
    from torchvision.models import detection

    from detkit import load_detector
    from detkit.commands import main as detkit_main
    from detkit.training.cli import build_cli

    torch.manual_seed(0)
    theirs = getattr(detection, model)(weights=None, weights_backbone=None).state_dict()
    weights = tmp_path / f"{model}.pth"
    torch.save(theirs, weights)
    configs = Path(__file__).parents[2] / "configs"
    args = ["fit", "--config", str(configs / "shapes.yaml")]
    for name in overlays:
        args += ["--config", str(configs / name)]
    args += [
        "--model.init_weights", f"torchvision:{model}:{weights}",
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false",
        "--trainer.callbacks", "[]", "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2",
        "--trainer.enable_model_summary", "false", "--trainer.accelerator", "cpu",
        "--data.train.init_args.num_images", "4", "--data.val.init_args.num_images", "2",
        "--data.test.init_args.num_images", "2", "--data.batch_size", "2", "--data.num_workers", "0",
        "--data.input_size", "128", "--predictions.max_drawn", "0",
    ]  # fmt: skip
    with pytest.warns(UserWarning, match=r"not loaded, shapes differ.*\n.*head\.cls_logits\.bias: checkpoint \[(91|819)\]"):
        build_cli(args=args)
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    predictor = load_detector(best)
    assert predictor.class_names == ["circle", "square", "triangle"]
    ours = predictor.detector.state_dict()
    # The frozen stem and layer1 are torchvision's tensors as they were; the classifier has the new classes.
    for name in ("backbone.body.conv1.weight", "backbone.body.layer1.0.conv1.weight"):
        assert torch.equal(ours[name], theirs[name])
    assert ours["head.cls_logits.bias"].shape[0] == {"fcos_resnet50_fpn": 3, "retinanet_resnet50_fpn_v2": 27}[model]
    assert ours["head.cls_logits.weight"].shape[0] != theirs["head.classification_head.cls_logits.weight"].shape[0]

    assert detkit_main(["export", "--ckpt_path", str(best), "--score-threshold", "0.0"]) == 0
    exported = load_detector(tmp_path / "run" / "export" / "model.onnx")
    image = (torch.rand(100, 140, 3) * 255).to(torch.uint8).numpy()
    [result] = exported.predict(image, score_threshold=0.0)
    [expected] = predictor.predict(image, score_threshold=0.0)
    assert len(result["boxes"]) == len(expected["boxes"]) > 0
    top = slice(0, 10)  # the untrained classifier scores alike: compare the clearest ones
    assert abs(result["scores"][top] - expected["scores"][top]).max() < 1e-4
