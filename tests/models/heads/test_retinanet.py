"""Tests for the RetinaNet head family: AnchorGrid, MaxIoUAssigner (against torchvision's Matcher), RetinaNetLoss, the head."""

from functools import partial

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from detkit.models import FPN, AnchorGrid, Detector, MaxIoUAssigner, PlainConvBackbone, RetinaNetHead, RetinaNetLoss
from detkit.models.heads.iou_assigner import IGNORED
from detkit.ops.boxes import decode_deltas, encode_deltas


def test_anchor_grid_is_torchvisions_default_anchor_generator():
    grid = AnchorGrid()
    assert [grid.sizes(s) for s in (8, 128)] == [[32, 40, 50], [512, 645, 812]]
    sizes = [(16, 32), (8, 16), (4, 8), (2, 4), (1, 2)]
    anchors, centres, strides = grid(sizes, [8, 16, 32, 64, 128])
    theirs = AnchorGenerator(
        tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3))) for x in [32, 64, 128, 256, 512]),
        ((0.5, 1.0, 2.0),) * 5,
    )
    images = ImageList(torch.zeros(1, 3, 128, 256), [(128, 256)])
    expected = theirs(images, [torch.zeros(1, 1, h, w) for h, w in sizes])[0]
    assert torch.equal(anchors, expected)
    assert torch.equal(centres, 0.5 * (expected[:, :2] + expected[:, 2:]))
    assert strides.tolist()[:9] == [8.0] * 9 and len(strides) == len(anchors) == 9 * sum(h * w for h, w in sizes)


def test_anchor_grid_offset_and_bad_arguments():
    anchors, centres, _ = AnchorGrid(scales_per_octave=1, aspect_ratios=[1.0], offset=0.5)([(2, 2)], [8])
    assert centres.tolist() == [[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]]
    assert anchors[0].tolist() == [-12.0, -12.0, 20.0, 20.0]  # a 32 px square around (4, 4)
    for bad in ({"size_per_stride": 0}, {"scales_per_octave": 0}, {"aspect_ratios": []}):
        with pytest.raises(ValueError):
            AnchorGrid(**bad)


def _matcher_by_loops(iou, fg=0.5, bg=0.4):
    """RetinaNet's matching rule, written anchor by anchor (torchvision's ``Matcher`` with low-quality
    matches): ``(M, N)`` IoU -> ``(N,)`` box index, -1 background, -2 ignored."""
    num_gt, num_anchors = iou.shape
    matched = []
    for n in range(num_anchors):
        best = max(range(num_gt), key=lambda m: (iou[m, n].item(), -m))  # first of equal maxima
        value = iou[best, n].item()
        matched.append(best if value >= fg else (-2 if value >= bg else -1))
    for m in range(num_gt):  # each box's best anchors (ties included) take their own best box
        top = iou[m].max().item()
        for n in range(num_anchors):
            if top > 0 and iou[m, n].item() == top:
                matched[n] = max(range(num_gt), key=lambda k: (iou[k, n].item(), -k))
    return torch.tensor(matched)


def test_max_iou_assigner_equals_the_rule_written_by_loops():
    torch.manual_seed(0)
    anchors = AnchorGrid()([(8, 8), (4, 4)], [8, 16])[0]
    xy = torch.rand(2, 6, 2) * 100
    gt = torch.cat((xy, xy + 8 + torch.rand(2, 6, 2) * 60), dim=-1)  # (B, M, 4)
    labels = torch.randint(0, 5, (2, 6))
    valid = torch.ones(2, 6, dtype=torch.bool)
    out = MaxIoUAssigner()(anchors, gt, labels, valid)
    for b in range(2):
        matched = _matcher_by_loops(box_iou(gt[b], anchors))
        expected = torch.where(matched >= 0, labels[b][matched.clamp(min=0)], torch.where(matched == -2, IGNORED, -1))
        assert torch.equal(out.labels[b], expected)
        assert torch.equal(out.gt_index[b], torch.where(matched >= 0, matched, -1))
        assert torch.equal(out.boxes[b][matched >= 0], gt[b][matched[matched >= 0]])
    assert out.scores.sum() == (out.labels >= 0).sum() > 0


def test_max_iou_assigner_crowd_padding_and_empty():
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    gt = torch.tensor([[[0.0, 0, 10, 10], [20, 20, 30, 30]]])
    out = MaxIoUAssigner()(anchors, gt, torch.tensor([[2, 4]]), torch.tensor([[True, False]]))  # second: crowd
    assert out.labels.tolist() == [[2, -1]]
    empty = MaxIoUAssigner()(anchors, torch.zeros(1, 0, 4), torch.zeros(1, 0, dtype=torch.long), torch.zeros(1, 0, dtype=torch.bool))
    assert empty.labels.tolist() == [[-1, -1]] and empty.scores.sum() == 0
    with pytest.raises(ValueError):
        MaxIoUAssigner(fg_iou=0.3, bg_iou=0.4)


def test_deltas_round_trip():
    anchors = torch.tensor([[0.0, 0, 32, 16], [10, 10, 50, 90]])
    boxes = torch.tensor([[4.0, 2, 30, 20], [0, 20, 70, 60]])
    torch.testing.assert_close(decode_deltas(anchors, encode_deltas(anchors, boxes)), boxes)


@pytest.mark.parametrize("box_loss", ["giou", "l1"])
def test_loss_skips_ignored_anchors_and_trains_positive_boxes(box_loss):
    # IoU with the box: 0.69 (positive), 0.498 (ignored), 0 (background)
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 17, 17], [40, 40, 50, 50]])
    box = torch.tensor([[[0.0, 0, 12, 12]]])
    assigned = MaxIoUAssigner()(anchors, box, torch.tensor([[1]]), torch.tensor([[True]]))
    assert assigned.labels.tolist() == [[1, IGNORED, -1]]
    loss = RetinaNetLoss(box_loss=box_loss)
    logits = torch.zeros(1, 3, 2)
    perfect = encode_deltas(anchors, box[0].expand(3, 4))[None]  # (1, 3, 4)
    base = loss(logits, perfect, anchors, assigned)
    assert base["loss_box"].abs() < 1e-5
    # The ignored anchor's logits and every non-positive anchor's deltas change nothing.
    other = loss(logits.index_fill(1, torch.tensor([1]), 9.0), perfect.index_fill(1, torch.tensor([1, 2]), 3.0), anchors, assigned)
    torch.testing.assert_close(other["loss"], base["loss"])
    # The background anchor's logits and the positive's deltas do.
    assert loss(logits.index_fill(1, torch.tensor([2]), 9.0), perfect, anchors, assigned)["loss_cls"] > base["loss_cls"] + 1
    assert loss(logits, perfect.index_fill(1, torch.tensor([0]), 0.5), anchors, assigned)["loss_box"] > 0.05
    with pytest.raises(ValueError):
        RetinaNetLoss(box_loss="smooth")


def test_head_trains_and_decodes_on_a_small_detector():
    torch.manual_seed(0)
    detector = Detector(
        2, PlainConvBackbone(widths=[8, 8, 16, 16, 16]), neck=partial(FPN, out_channels=16, extra_levels=1),
        head=partial(RetinaNetHead, num_convs=1, anchors=AnchorGrid(scales_per_octave=2, aspect_ratios=[1.0])),
        channels_last=False,
    )  # fmt: skip
    images = torch.rand(2, 3, 64, 128)
    outputs = detector(images)
    levels = [(8, 16), (4, 8), (2, 4), (1, 2)]  # strides 8 .. 64
    assert outputs["cls_logits"].shape == (2, 2 * sum(h * w for h, w in levels), 2)
    assert outputs["box_deltas"].shape[:2] == outputs["cls_logits"].shape[:2] == (2, len(outputs["anchors"]))
    targets = [{"boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]  # fmt: skip
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01)
    first = None
    for _ in range(5):
        losses = detector.loss(images, targets)
        first = first if first is not None else losses["loss"].item()
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    assert losses["loss"].item() < first
    [found, _] = detector.predict_batch(images, score_threshold=0.0)
    assert detector.head.decoder.max_detections == 300 and detector.head.decoder.nms_iou == 0.5
    assert 20 < len(found["boxes"]) <= 300
    assert found["point_index"].max() < len(outputs["anchors"])
    with pytest.raises(ValueError, match="same channels"):
        RetinaNetHead([(16, 8), (32, 16)], 2)
