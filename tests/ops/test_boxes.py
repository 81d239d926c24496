"""Tests for detkit.ops.boxes: conversions, clipping, letterbox mapping, ltrb encoding."""

import torch

from detkit.ops.boxes import (
    box_area,
    clip_boxes,
    cxcywh_to_xyxy,
    decode_ltrb,
    encode_ltrb,
    letterbox_resize,
    letterbox_scale,
    paired_giou_loss,
    unletterbox_boxes,
    xyxy_to_cxcywh,
)


def test_area_and_degenerate_boxes():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 3.0], [5.0, 5.0, 5.0, 9.0], [3.0, 3.0, 1.0, 1.0]])
    torch.testing.assert_close(box_area(boxes), torch.tensor([12.0, 0.0, 0.0]))


def test_clip_to_height_width():
    boxes = torch.tensor([[-5.0, -1.0, 30.0, 12.0]])
    torch.testing.assert_close(clip_boxes(boxes, (10, 20)), torch.tensor([[0.0, 0.0, 20.0, 10.0]]))


def test_cxcywh_round_trip():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    centre = xyxy_to_cxcywh(boxes)
    torch.testing.assert_close(centre, torch.tensor([[20.0, 40.0, 20.0, 40.0]]))
    torch.testing.assert_close(cxcywh_to_xyxy(centre), boxes)


def test_letterbox_scale_and_inverse_for_non_square_image():
    # A 300x600 (h x w) image letterboxed to 200: scale 1/3, resized to 100x200.
    scale = letterbox_scale((300, 600), 200)
    assert abs(scale - 1 / 3) < 1e-12
    original = torch.tensor([[60.0, 30.0, 450.0, 300.0]])
    input_boxes = original * scale
    torch.testing.assert_close(unletterbox_boxes(input_boxes, scale, (300, 600)), original)
    # A box predicted into the padding is clipped to the original image.
    padded = torch.tensor([[150.0, 90.0, 210.0, 150.0]])
    torch.testing.assert_close(unletterbox_boxes(padded, scale, (300, 600)), torch.tensor([[450.0, 270.0, 600.0, 300.0]]))


def test_ltrb_encoding_is_inverse_of_decoding_and_batched():
    points = torch.tensor([[5.0, 5.0], [15.0, 2.0]])  # (P, 2)
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0]], [[10.0, 0.0, 20.0, 4.0]]])  # (P, 1, 4) -> broadcast
    ltrb = encode_ltrb(points[:, None], boxes)
    torch.testing.assert_close(ltrb, torch.tensor([[[5.0, 5.0, 5.0, 5.0]], [[5.0, 2.0, 5.0, 2.0]]]))
    torch.testing.assert_close(decode_ltrb(points[:, None], ltrb), boxes)
    outside = encode_ltrb(torch.tensor([[25.0, 2.0]]), torch.tensor([[10.0, 0.0, 20.0, 4.0]]))
    assert (outside < 0).any()


def test_paired_giou_loss_matches_torchvision():
    from torchvision.ops import generalized_box_iou_loss

    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=generator) * 50
    boxes1 = torch.cat([xy, xy + torch.rand(200, 2, generator=generator) * 30], dim=1)
    xy = torch.rand(200, 2, generator=generator) * 50
    boxes2 = torch.cat([xy, xy + torch.rand(200, 2, generator=generator) * 30], dim=1)
    boxes2[:10] = boxes1[:10]  # identical pairs: loss 0
    ours = paired_giou_loss(boxes1, boxes2)
    torch.testing.assert_close(ours, generalized_box_iou_loss(boxes1, boxes2, reduction="none"))
    torch.testing.assert_close(ours[:10], torch.zeros(10), atol=1e-6, rtol=0)
    disjoint = paired_giou_loss(torch.tensor([0.0, 0.0, 1.0, 1.0]), torch.tensor([2.0, 0.0, 3.0, 1.0]))
    assert abs(float(disjoint) - (1 + 1 / 3)) < 1e-6  # IoU 0, enclosing 3, union 2


def test_letterbox_resize_gives_exact_per_axis_factors():
    # 61 x 97 (h x w) to 64: the long side becomes 64, the short side round(61 * 64 / 97) = round(40.25) = 40.
    (new_h, new_w), (sx, sy) = letterbox_resize((61, 97), 64)
    assert (new_h, new_w) == (40, 64)
    assert (sx, sy) == (64 / 97, 40 / 61)
    original = torch.tensor([[0.0, 0.0, 97.0, 61.0]])
    resized = original * torch.tensor([sx, sy, sx, sy])
    torch.testing.assert_close(resized, torch.tensor([[0.0, 0.0, 64.0, 40.0]]))
    torch.testing.assert_close(unletterbox_boxes(resized, torch.tensor([sx, sy]), (61, 97)), original)
