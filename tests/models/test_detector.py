"""End-to-end tests for detkit.models.detector with the small PlainConvBackbone."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detkit.models import FPN, DenseDecoder, Detector, FCOSHead, PlainConvBackbone


def _detector(fpn_extra_levels=2, decoder=None, **kwargs):
    torch.manual_seed(0)
    backbone = PlainConvBackbone(widths=[8, 16, 24, 32, 48])
    neck = partial(FPN, out_channels=32, extra_levels=fpn_extra_levels)
    head = partial(FCOSHead, num_convs=2, decoder=decoder)
    return Detector(3, backbone, neck, head, **kwargs)


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
    strides = [8, 16, 32, 64, 128][: 3 + extra_levels]
    assert det.strides == strides and det.stride == strides[-1]
    assert [i.stride for i in det.feature_info] == strides
    images = torch.rand(2, 3, 64, 96)
    # Padded bottom/right to a multiple of the largest stride (no-op when already aligned).
    height, width = -(-64 // det.stride) * det.stride, -(-96 // det.stride) * det.stride
    out = det(images)
    num_points = sum((height // s) * (width // s) for s in strides)
    assert out["cls_logits"].shape == (2, num_points, 3)
    assert out["ltrb"].shape == (2, num_points, 4)
    assert out["quality_logits"].shape == (2, num_points)
    assert out["points"].shape == (num_points, 2)
    assert sorted(set(out["point_strides"].tolist())) == strides
    maps = det.feature_maps(images)
    assert [tuple(m.shape[-2:]) for m in maps] == [(height // s, width // s) for s in strides]


def test_padding_to_largest_stride():
    det = _detector(fpn_extra_levels=1).eval()  # stride 64
    images = torch.rand(1, 3, 100, 64)
    padded = F.pad(images, (0, 0, 0, 28))
    assert torch.equal(det.pad(images), padded) and det.pad(padded) is padded
    for a, b in zip(det.feature_maps(images), det.feature_maps(padded)):
        assert torch.equal(a, b)
    # Detections of the unpadded image are clipped to it.
    dets = det.predict_batch(images, score_threshold=0.0)[0]
    assert dets["boxes"].shape[0] > 0 and (dets["boxes"][:, 3] <= 100).all()
    # Without padding the maps have ceil(H / s) cells, as format-1 detectors had.
    unpadded = _detector(fpn_extra_levels=1, pad_to_stride=False).eval()
    assert [m.shape[-2] for m in unpadded.feature_maps(images)] == [13, 7, 4, 2]


def test_normalisation_inside():
    det = _detector().eval()
    images = torch.rand(1, 3, 128, 128)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = det.neck(det.backbone((images - mean) / std))
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


def test_loss_and_predict_match_separate_calls():
    det = _detector().eval()
    images = torch.rand(2, 3, 64, 64)
    losses, dets = det.loss_and_predict(images, _targets())
    expected = det.loss(images, _targets())
    for key in expected:
        assert torch.equal(losses[key], expected[key])
    for a, b in zip(dets, det.predict_batch(images)):
        assert all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels", "point_index", "level"))


def test_predict_batch_in_input_pixels():
    det = _detector(decoder=DenseDecoder(score_threshold=0.0, max_detections=7))
    det.train()
    images = torch.rand(2, 3, 64, 96)
    dets = det.predict_batch(images)
    assert det.training  # mode restored
    assert len(dets) == 2
    num_points = det(images)["points"].shape[0]
    for d in dets:
        assert d["boxes"].shape == (7, 4) and d["scores"].shape == (7,) and d["labels"].shape == (7,)
        assert (d["boxes"][:, 0::2] <= 96).all() and (d["boxes"][:, 1::2] <= 64).all() and (d["boxes"] >= 0).all()
        assert (d["scores"][:-1] >= d["scores"][1:]).all()
        assert not d["scores"].requires_grad
        assert d["point_index"].shape == (7,) and ((d["point_index"] >= 0) & (d["point_index"] < num_points)).all()
        assert ((d["level"] >= 0) & (d["level"] < len(det.strides))).all()
    assert det.predict_batch(images, score_threshold=1.0)[0]["boxes"].shape == (0, 4)


def test_composition_is_checked():
    backbone = PlainConvBackbone(widths=[8, 16, 24, 32])
    with pytest.raises(ValueError, match="neck"):
        Detector(3, backbone, lambda info: nn.Identity(), partial(FCOSHead))
    with pytest.raises(ValueError, match="DenseHead"):
        Detector(3, backbone, FPN, lambda info, k: nn.Identity())
    with pytest.raises(ValueError, match="num_classes"):
        Detector(0, backbone, FPN, FCOSHead)
    with pytest.raises(ValueError, match="image_mean"):
        Detector(3, backbone, FPN, FCOSHead, image_mean=(0.5,))
    det = Detector(3, backbone, FPN, FCOSHead, channels_last=False)
    assert det.head.in_features == det.neck.feature_info and det.neck.in_features == backbone.feature_info


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
