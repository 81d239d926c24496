"""Tests for detkit.models.head."""

import math

import torch

from detkit.models.head import FCOSHead, make_points


def test_make_points_hand_computed():
    points, strides = make_points([(2, 3), (1, 1)], [8, 16], device="cpu", dtype=torch.float32)
    expected = torch.tensor(
        [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8]], dtype=torch.float32
    )
    assert torch.equal(points, expected)
    assert torch.equal(strides, torch.tensor([8, 8, 8, 8, 8, 8, 16], dtype=torch.float32))


def test_output_shapes_and_init():
    head = FCOSHead(16, 5, num_convs=2, strides=[8, 16])
    feats = [torch.randn(2, 16, 4, 6), torch.randn(2, 16, 2, 3)]
    cls, ltrb, quality = head(feats)
    assert cls.shape == (2, 30, 5) and ltrb.shape == (2, 30, 4) and quality.shape == (2, 30)
    assert (ltrb >= 0).all()
    assert torch.allclose(head.cls_logits.bias, torch.full((5,), -math.log(99.0)))
    assert head.scales.shape == (2,)


def test_reshape_order_and_pixel_scaling():
    """Logits follow the make_points order, and ltrb = relu(scale * raw) * stride."""
    head = FCOSHead(2, 1, num_convs=0, kernel_size=1, strides=[8, 16])
    with torch.no_grad():
        for conv in (head.cls_logits, head.box_reg, head.quality_logits):
            conv.weight.zero_()
            conv.bias.zero_()
        head.cls_logits.weight[0, 0] = 1.0  # logit = channel 0
        head.box_reg.weight[:, 1] = 1.0  # every distance = channel 1
        head.scales.copy_(torch.tensor([1.0, 2.0]))
    sizes = [(3, 4), (2, 2)]
    feats = []
    for h, w in sizes:
        code = (torch.arange(h)[:, None] * 10 + torch.arange(w)[None, :]).float()  # row*10 + col
        feats.append(torch.stack((code, torch.ones(h, w)))[None])
    cls, ltrb, _ = head(feats)
    points, strides = make_points(sizes, [8, 16])
    rows, cols = points[:, 1] / strides - 0.5, points[:, 0] / strides - 0.5
    assert torch.equal(cls[0, :, 0], rows * 10 + cols)
    expected = (strides * torch.where(strides == 8, 1.0, 2.0))[:, None].expand(-1, 4)
    assert torch.equal(ltrb[0], expected)
