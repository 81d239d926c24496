"""Tests for detkit.models.heads.task_aligned: outputs, decoding, training through Detector and config."""

import math
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader

from detkit.data import EvalTransform, ShapesReader, TransformedDataset, collate_detection
from detkit.models import (
    FPN,
    DenseDecoder,
    Detector,
    FeatureInfo,
    PlainConvBackbone,
    TaskAlignedAssigner,
    TaskAlignedHead,
    TaskAlignedLoss,
    make_points,
)
from detkit.models.heads import expected_distance, geometric_bin_logits
from detkit.training.module import DetectionModule

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def _levels(channels, strides):
    return [FeatureInfo(c, s) for c, s in zip(channels, strides)]


def test_output_shapes_and_init():
    head = TaskAlignedHead(_levels([16, 16], [8, 16]), 5, reg_max=8)
    out = head([torch.randn(2, 16, 4, 6), torch.randn(2, 16, 2, 3)])
    assert out["cls_logits"].shape == (2, 30, 5) and out["dist_logits"].shape == (2, 30, 4, 8)
    assert out["ltrb"].shape == (2, 30, 4) and (out["ltrb"] >= 0).all()
    points, strides = make_points([(4, 6), (2, 3)], [8, 16])
    assert torch.equal(out["points"], points) and torch.equal(out["point_strides"], strides)
    for conv in head.cls_preds:
        torch.testing.assert_close(conv.bias, torch.full((5,), -math.log(99.0)))
    # Box bins start from the geometric prior: about 1.5 strides per side on every level.
    torch.testing.assert_close(out["ltrb"] / strides[None, :, None], torch.full((2, 30, 4), 1.5), atol=0.2, rtol=0)
    assert len(head.cls_branches) == len(head.box_preds) == 1  # shared across levels by default
    assert isinstance(head.cls_branches[0][0].norm, nn.GroupNorm)


def test_geometric_bin_prior():
    for mean in (0.25, 1.5, 7.5, 12.0):
        logits = geometric_bin_logits(16, mean)
        torch.testing.assert_close(expected_distance(logits), torch.tensor(mean))
        if mean != 7.5:
            assert (logits.diff() < 0).all() == (mean < 7.5)  # decreasing below the uniform mean
    torch.testing.assert_close(geometric_bin_logits(16, 7.5), torch.zeros(16), atol=1e-6, rtol=0)  # uniform
    with pytest.raises(ValueError, match="mean"):
        geometric_bin_logits(4, 3.0)
    head = TaskAlignedHead(_levels([8], [8]), 1, num_convs=0, reg_max=6, prior_distance=2.0)
    torch.testing.assert_close(head.box_preds[0].bias, geometric_bin_logits(6, 2.0).repeat(4))


def test_per_level_branches_with_batch_norm_and_different_widths():
    head = TaskAlignedHead(_levels([8, 16], [8, 16]), 2, share_convs=False, norm="batch", channels=12)
    assert len(head.cls_branches) == len(head.box_branches) == 2
    assert isinstance(head.box_branches[1][0].norm, nn.BatchNorm2d) and head.cls_preds[1].in_channels == 12
    out = head([torch.randn(2, 8, 4, 4), torch.randn(2, 16, 2, 2)])
    assert out["cls_logits"].shape == (2, 20, 2)
    with pytest.raises(ValueError, match="share_convs"):
        TaskAlignedHead(_levels([8, 16], [8, 16]), 2)
    with pytest.raises(ValueError, match="reg_max"):
        TaskAlignedHead(_levels([8], [8]), 2, reg_max=1)


def test_decodes_a_known_distribution_to_boxes():
    head = TaskAlignedHead(_levels([2, 2], [8, 16]), 1, num_convs=0, reg_max=4)
    # Per side (l, t, r, b): all mass on bin 2, half on 1 and 3, uniform, all on bin 0.
    big = 30.0
    sides = torch.tensor(
        [[-big, -big, big, -big], [-big, 0.0, -big, 0.0], [0.0, 0.0, 0.0, 0.0], [big, -big, -big, -big]]
    )
    with torch.no_grad():
        for conv in (*head.cls_preds, *head.box_preds):
            conv.weight.zero_()
        head.box_preds[0].bias.copy_(sides.reshape(-1))
    torch.testing.assert_close(expected_distance(sides), torch.tensor([2.0, 2.0, 1.5, 0.0]))
    out = head([torch.randn(1, 2, 2, 2), torch.randn(1, 2, 1, 1)])
    strides = out["point_strides"]
    torch.testing.assert_close(out["ltrb"][0], strides[:, None] * torch.tensor([2.0, 2.0, 1.5, 0.0]))
    # The point of the stride-16 level at (8, 8) decodes to [8 - 32, 8 - 32, 8 + 24, 8 + 0], clipped.
    [det] = head.predict(out, (64, 64), score_threshold=0.0)
    top = det["point_index"] == 4
    torch.testing.assert_close(det["boxes"][top], torch.tensor([[0.0, 0.0, 32.0, 8.0]]))
    assert det["level"][top].tolist() == [1]
    torch.testing.assert_close(det["scores"], torch.full_like(det["scores"], 0.01))  # the prior


def test_default_parts_and_loss_equals_assigner_then_loss():
    head = TaskAlignedHead(_levels([8, 8], [8, 16]), 3, num_convs=1)
    assert isinstance(head.assigner, TaskAlignedAssigner) and head.assigner.topk == 10
    assert isinstance(head.criterion, TaskAlignedLoss) and isinstance(head.decoder, DenseDecoder)
    assert not [k for k in head.state_dict() if k.startswith(("assigner", "criterion", "decoder"))]
    parts = TaskAlignedAssigner(topk=3), TaskAlignedLoss(cls_loss="varifocal"), DenseDecoder(max_detections=2)
    head = TaskAlignedHead(_levels([8, 8], [8, 16]), 3, num_convs=1, assigner=parts[0], loss=parts[1], decoder=parts[2])
    assert (head.assigner, head.criterion, head.decoder) == parts

    torch.manual_seed(0)
    out = head([torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)])
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 30.0, 30.0]]), "labels": torch.tensor([2, 0]),
         "iscrowd": torch.tensor([0, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    losses = head.loss(out, targets)
    assert set(losses) == {"loss", "loss_cls", "loss_box", "loss_dfl"}
    pred_boxes = torch.cat((out["points"] - out["ltrb"][..., :2], out["points"] + out["ltrb"][..., 2:]), -1)
    assigned = parts[0](
        torch.sigmoid(out["cls_logits"]).detach(), pred_boxes.detach(), out["points"],
        torch.tensor([[[0.0, 0, 16, 16], [8, 8, 30, 30]], [[0, 0, 0, 0], [0, 0, 0, 0]]]),
        torch.tensor([[2, 0], [-1, -1]]), torch.tensor([[True, False], [False, False]]),
    )  # fmt: skip
    assert (assigned.labels[0] == 2).sum() == 3 and (assigned.labels[1] == -1).all()  # top 3, crowd ignored
    expected = parts[1](
        out["cls_logits"], out["dist_logits"], out["ltrb"], out["points"], out["point_strides"], assigned
    )
    for key in expected:
        torch.testing.assert_close(losses[key], expected[key])
    assert len(head.predict(out, (32, 32))[0]["boxes"]) <= 2


def _tiny_detector(**head_args):
    backbone = PlainConvBackbone(widths=[8, 16, 24, 32, 48])
    return Detector(2, backbone, partial(FPN, out_channels=16, extra_levels=0), partial(TaskAlignedHead, **head_args))


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    detector = _tiny_detector(num_convs=1, norm="batch", share_convs=False)
    images = torch.rand(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 44.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[10.0, 12.0, 50.0, 36.0], [0, 0, 20, 20]]), "labels": torch.tensor([0, 1])},
    ]
    optimizer = torch.optim.Adam(detector.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        losses = detector.loss(images, targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(losses["loss"].item())
    assert all(math.isfinite(h) for h in history) and history[-1] < 0.5 * history[0]
    for det in detector.predict_batch(images):
        assert ((det["level"] >= 0) & (det["level"] < 3)).all() and det["boxes"].shape[1] == 4


def test_tiny_detector_overfits_a_few_synthetic_images_to_high_map(tmp_path):
    torch.manual_seed(0)
    data = TransformedDataset(ShapesReader(4, seed=7), EvalTransform(128))
    loader = DataLoader(data, batch_size=4, collate_fn=collate_detection)
    detector = {
        "class_path": "detkit.models.Detector",
        "init_args": {
            "backbone": {
                "class_path": "detkit.models.PlainConvBackbone", "init_args": {"widths": [16, 32, 64, 96, 128]}
            },
            "neck": {"class_path": "detkit.models.FPN", "init_args": {"out_channels": 64, "extra_levels": 0}},
            "head": {"class_path": "detkit.models.TaskAlignedHead", "init_args": {"num_convs": 1}},
        },
    }
    module = DetectionModule.from_config({
        "detector": detector, "num_classes": 3, "class_names": ["circle", "square", "triangle"],
        "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.003}}, "warmup_steps": 20,
    })  # fmt: skip
    options = dict(accelerator="cpu", default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    Trainer(max_steps=200, num_sanity_val_steps=0, limit_val_batches=0, **options).fit(module, loader)
    [metrics] = Trainer(**options).validate(module, dataloaders=loader, verbose=False)
    assert metrics["val/map"] >= 0.9, metrics
    assert metrics["val/map_50"] >= 0.99, metrics


def test_shapes_config_with_the_head_swapped_parses(tmp_path):
    from detkit.training.cli import parse_config

    config = yaml.safe_load((CONFIGS / "shapes.yaml").read_text())
    config["model"]["detector"]["init_args"]["head"] = {
        "class_path": "detkit.models.TaskAlignedHead",
        "init_args": {"num_convs": 1, "norm": "batch", "share_convs": False, "reg_max": 12,
                      "loss": {"class_path": "detkit.models.TaskAlignedLoss", "init_args": {"cls_loss": "varifocal"}}},
    }  # fmt: skip
    path = tmp_path / "shapes_tal.yaml"
    path.write_text(yaml.safe_dump(config))
    head = parse_config(["--config", str(path)]).model.detector.init_args.head
    assert head.class_path == "detkit.models.TaskAlignedHead"
    assert head.init_args.reg_max == 12 and head.init_args.norm == "batch" and head.init_args.share_convs is False
    assert head.init_args.loss.init_args.cls_loss == "varifocal"

    shipped = parse_config(["--config", str(CONFIGS / "shapes.yaml"), "--config", str(CONFIGS / "shapes_tal.yaml")])
    assert shipped.model.detector.init_args.head.class_path == "detkit.models.TaskAlignedHead"
    with pytest.raises(SystemExit):  # a typo in the head's options is an error, not ignored
        parse_config(["--config", str(path), "--model.detector.init_args.head.init_args.reg_maxx", "8"])
