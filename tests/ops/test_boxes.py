"""Tests for detkit.ops.boxes and detkit.ops.xywh: conversions, ltrb encoding, paired IoU / GIoU."""

import torch

from detkit.ops.boxes import (
    box_area,
    cxcywh_to_xyxy,
    decode_ltrb,
    encode_ltrb,
    paired_giou_loss,
    xyxy_to_cxcywh,
)


def test_area_and_degenerate_boxes():
    boxes = torch.tensor([[0.0, 0.0, 4.0, 3.0], [5.0, 5.0, 5.0, 9.0], [3.0, 3.0, 1.0, 1.0]])
    torch.testing.assert_close(box_area(boxes), torch.tensor([12.0, 0.0, 0.0]))


def test_cxcywh_round_trip():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    centre = xyxy_to_cxcywh(boxes)
    torch.testing.assert_close(centre, torch.tensor([[20.0, 40.0, 20.0, 40.0]]))
    torch.testing.assert_close(cxcywh_to_xyxy(centre), boxes)


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


def test_xywh_conversions_of_numpy_arrays_round_trip_keep_dtype_and_batch():
    import numpy as np

    from detkit.ops.boxes import xywh_to_xyxy as exported
    from detkit.ops.xywh import xywh_to_xyxy, xyxy_to_xywh

    xyxy = np.array([[10.0, 20.0, 30.0, 60.0], [0.5, 0.25, 0.5, 4.0]])
    xywh = xyxy_to_xywh(xyxy)
    np.testing.assert_array_equal(xywh, [[10, 20, 20, 40], [0.5, 0.25, 0, 3.75]])
    np.testing.assert_array_equal(xywh_to_xyxy(xywh), xyxy)
    batched = np.stack([xyxy, xyxy + 1])  # [2, N, 4]: any leading shape
    np.testing.assert_array_equal(xyxy_to_xywh(batched)[1], xyxy_to_xywh(xyxy + 1))
    empty = xyxy_to_xywh(np.zeros((0, 4), np.float32))
    assert empty.shape == (0, 4) and empty.dtype == np.float32
    assert xywh_to_xyxy(xywh.astype(np.float32)).dtype == np.float32 and exported is xywh_to_xyxy
