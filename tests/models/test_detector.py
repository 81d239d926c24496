"""End-to-end tests for detkit.models.detector with the small PlainConvBackbone."""

import pytest
import torch

from detkit.models import Detector, PlainConvBackbone


def _detector(**kwargs):
    torch.manual_seed(0)
    backbone = PlainConvBackbone(widths=[8, 16, 24, 32, 48])
    defaults = dict(fpn_channels=32, head_convs=2)
    defaults.update(kwargs)
    return Detector(3, backbone, **defaults)


def _targets():
    return [
        {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 44.0], [30.0, 30.0, 60.0, 62.0]]),
            "labels": torch.tensor([0, 2]),
            "iscrowd": torch.tensor([0, 0]),
        },
        {"boxes": torch.tensor([[10.0, 12.0, 50.0, 36.0]]), "labels": torch.tensor([1]), "iscrowd": torch.tensor([0])},
    ]


@pytest.mark.parametrize("extra_levels", [0, 2])
def test_forward_shapes(extra_levels):
    det = _detector(fpn_extra_levels=extra_levels)
    images = torch.rand(2, 3, 64, 96)
    out = det(images)
    strides = [8, 16, 32, 64, 128][: 3 + extra_levels]
    num_points = sum(-(-64 // s) * -(-96 // s) for s in strides)
    assert out["cls_logits"].shape == (2, num_points, 3)
    assert out["ltrb"].shape == (2, num_points, 4)
    assert out["quality_logits"].shape == (2, num_points)
    assert out["points"].shape == (num_points, 2)
    assert sorted(set(out["point_strides"].tolist())) == strides
    maps = det.feature_maps(images)
    assert [m.shape[-1] for m in maps] == [-(-96 // s) for s in strides]
    assert [i.stride for i in det.feature_info] == strides


def test_normalisation_inside():
    det = _detector().eval()
    images = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = det.fpn(det.backbone((images - mean) / std))
    for a, b in zip(det.feature_maps(images), expected):
        assert torch.allclose(a, b, atol=1e-6)


def test_loss_keys_crowd_and_empty():
    det = _detector()
    images = torch.rand(2, 3, 64, 64)
    losses = det.loss(images, _targets())
    assert set(losses) == {"loss", "loss_cls", "loss_box", "loss_quality"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    assert losses["loss_box"] > 0
    # Only crowd boxes -> no positives, exactly like having no boxes at all.
    crowd = [dict(t, iscrowd=torch.ones_like(t["iscrowd"])) for t in _targets()]
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for _ in range(2)]
    det.eval()  # fixed BN statistics so both calls see identical outputs
    crowd_losses, empty_losses = det.loss(images, crowd), det.loss(images, empty)
    for key in losses:
        assert torch.allclose(crowd_losses[key], empty_losses[key])
    assert empty_losses["loss_box"] == 0
    with pytest.raises(ValueError, match="targets"):
        det.loss(images, _targets()[:1])


def test_predict_batch_in_input_pixels():
    det = _detector(score_threshold=0.0, max_detections=7)
    det.train()
    images = torch.rand(2, 3, 64, 96)
    dets = det.predict_batch(images)
    assert det.training  # mode restored
    assert len(dets) == 2
    for d in dets:
        assert d["boxes"].shape == (7, 4) and d["scores"].shape == (7,) and d["labels"].shape == (7,)
        assert (d["boxes"][:, 0::2] <= 96).all() and (d["boxes"][:, 1::2] <= 64).all() and (d["boxes"] >= 0).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()
        assert not d["scores"].requires_grad
    assert det.predict_batch(images, score_threshold=1.0)[0]["boxes"].shape == (0, 4)


def test_overfits_one_batch():
    det = _detector(fpn_extra_levels=0)
    images = torch.rand(2, 3, 64, 64)
    targets = _targets()
    optimizer = torch.optim.Adam(det.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        losses = det.loss(images, targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    assert history[-1]["loss_box"] < history[0]["loss_box"]
    # After overfitting, the best detection in each image overlaps a ground-truth box.
    dets = det.predict_batch(images)
    from torchvision.ops import box_iou

    for d, t in zip(dets, targets):
        assert d["boxes"].shape[0] > 0
        assert box_iou(d["boxes"][:1], t["boxes"]).max() > 0.5
