"""Tests for detkit.pictures.explain and ``detkit explain``: feature maps per backbone stage and pyramid level, grids, bad paths."""

import numpy as np
import pytest
import torch
from PIL import Image
from tiny import SHAPE_NAMES, TINY_DETECTOR

from detkit.checkpoints import CHECKPOINT_FORMAT_VERSION
from detkit.commands import main
from detkit.pictures.explain import feature_maps, top_channels
from detkit.inference import Predictor, instantiate_detector


def _predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(instantiate_detector(TINY_DETECTOR, 3), SHAPE_NAMES, input_size=96, pad_multiple=32)


def test_feature_maps_follow_the_feature_info_of_backbone_and_neck():
    model = _predictor()
    maps = feature_maps(model, np.full((60, 100, 3), 128, np.uint8))  # letterboxed to 96 x 96
    backbone, neck = model.detector.backbone.feature_info, model.detector.neck.feature_info
    assert list(maps) == [f"backbone.{i}" for i in range(len(backbone))] + [f"neck.P{s.stride.bit_length() - 1}" for s in neck]
    for info, name in zip([*backbone, *neck], maps):
        assert maps[name].shape == (info.channels, 96 // info.stride, 96 // info.stride), name
    assert [s.stride for s in neck] == sorted(s.stride for s in neck)


def test_top_channels_rank_by_mean_activation():
    feature = torch.zeros(5, 2, 2)
    feature[3] = 4.0
    feature[1] = 2.0
    feature[4, 0, 0] = 4.0  # mean 1
    assert top_channels(feature, 3).tolist() == [3, 1, 4]
    assert top_channels(feature, 9).shape == (5,)


def _checkpoint(tmp_path):
    model = _predictor()
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"detector.{k}": v for k, v in model.detector.state_dict().items()},
                "detkit": {"format_version": CHECKPOINT_FORMAT_VERSION, "num_classes": 3, "class_names": SHAPE_NAMES,
                           "detector": TINY_DETECTOR, "input_size": 96, "pad_multiple": 32}}, path)  # fmt: skip
    return path


def test_explain_on_an_image_a_folder_and_bad_paths(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 80, 3), dtype=np.uint8)).save(images / name)
    assert main(["explain", "--ckpt_path", str(ckpt), "--image", str(images / "a.png"), "--channels", "4"]) == 0
    out = tmp_path / "run" / "explain" / "a"
    names = sorted(p.name for p in out.glob("*.png"))
    layers = list(feature_maps(_predictor(), np.zeros((8, 8, 3), np.uint8)))
    assert names == sorted([*(f"{layer}.png" for layer in layers), "mean_activation.png"]) and "neck.P3" in layers
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in out.glob("*.png"))

    assert main(["explain", "--ckpt_path", str(ckpt), "--image", str(images), "--layers", "neck.P3", "--gradcam",
                 "--out", str(tmp_path / "both")]) == 0  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "both" / "b").glob("*.png")) == ["gradcam.png", "mean_activation.png", "neck.P3.png"]
    assert (tmp_path / "both" / "a" / "neck.P3.png").is_file()

    capsys.readouterr()
    assert main(["explain", "--ckpt_path", str(ckpt), "--image", str(tmp_path / "nope.jpg")]) == 2
    assert f"no image or folder at {tmp_path / 'nope.jpg'}" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["explain", "--ckpt_path", str(ckpt), "--image", str(tmp_path / "empty")]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["explain", "--ckpt_path", str(ckpt), "--image", str(images), "--layers", "neck.P9"]) == 2
    assert "unknown layers ['neck.P9']; this detector has ['backbone.0'" in capsys.readouterr().err
