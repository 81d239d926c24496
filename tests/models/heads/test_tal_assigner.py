"""Tests for detkit.models.heads.tal_assigner on hand-computed assignments."""

import pytest
import torch

from detkit.models import TaskAlignedAssigner
from detkit.models.heads import AssignedTargets


def _scores(rows):
    """``(1, P, K)`` class probabilities from nested lists."""
    return torch.tensor(rows, dtype=torch.float32)[None]


def _boxes(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_topk_by_alignment_inside_the_box_and_normalised_targets():
    # One box [0, 0, 40, 40] of class 1; alpha = beta = 1 so the metric is score * IoU.
    points = _boxes([[4, 4], [12, 4], [20, 20], [60, 60]])
    preds = _boxes([[0, 0, 40, 40], [0, 0, 40, 20], [0, 0, 20, 20], [0, 0, 40, 40]])[None]  # IoU 1, .5, .25, 1
    scores = _scores([[0.1, 0.5], [0.1, 0.9], [0.1, 0.8], [0.1, 0.99]])
    gt = _boxes([[0, 0, 40, 40]])[None]
    out = TaskAlignedAssigner(topk=2, alpha=1.0, beta=1.0)(
        scores, preds, points, gt, torch.tensor([[1]]), torch.tensor([[True]])
    )
    assert isinstance(out, AssignedTargets)
    # Metrics 0.5, 0.45, 0.2 inside; point 3 (60, 60) is outside despite its perfect prediction.
    assert out.labels.tolist() == [[1, 1, -1, -1]]
    assert out.gt_index.tolist() == [[0, 0, -1, -1]]
    # t / max t * max IoU = 0.5 / 0.5 * 1 and 0.45 / 0.5 * 1.
    torch.testing.assert_close(out.scores, torch.tensor([[1.0, 0.9, 0.0, 0.0]]))
    torch.testing.assert_close(out.boxes, torch.tensor([[[0.0, 0, 40, 40]] * 2 + [[0.0, 0, 0, 0]] * 2]))


def test_default_exponents_and_max_iou_scaling():
    # alpha 0.5, beta 6: point 0 has score .64 and IoU .5, point 1 score .25 and IoU .25.
    points = _boxes([[4, 4], [30, 30]])
    preds = _boxes([[0, 0, 40, 20], [0, 0, 20, 20]])[None]
    scores = _scores([[0.64], [0.25]])
    out = TaskAlignedAssigner()(scores, preds, points, _boxes([[0, 0, 40, 40]])[None], torch.tensor([[0]]),
                                torch.tensor([[True]]))
    t0, t1 = 0.8 * 0.5**6, 0.5 * 0.25**6
    assert out.labels.tolist() == [[0, 0]]
    # The best-aligned positive gets the box's best IoU over its positives (0.5), not 1.
    torch.testing.assert_close(out.scores, torch.tensor([[0.5, t1 / t0 * 0.5]]))


def test_point_claimed_by_two_boxes_goes_to_the_higher_iou():
    # A = [0, 0, 40, 40] (class 0), B = [10, 0, 50, 40] (class 1); point 0 (20, 20) is inside both.
    points = _boxes([[20, 20], [5, 20], [45, 20]])
    preds = _boxes([[10, 0, 50, 40], [0, 0, 10, 40], [40, 0, 50, 40]])[None]
    scores = _scores([[0.9, 0.1], [0.5, 0.0], [0.0, 0.2]])
    gts = _boxes([[0, 0, 40, 40], [10, 0, 50, 40]])[None]
    out = TaskAlignedAssigner(topk=1, alpha=1.0, beta=1.0)(
        scores, preds, points, gts, torch.tensor([[0, 1]]), torch.tensor([[True, True]])
    )
    # Top-1 of A is point 0 (0.9 * 0.6 > 0.5 * 0.25), top-1 of B is point 0 (0.1 * 1 > 0.2 * 0.25):
    # point 0's prediction overlaps B (IoU 1) more than A (0.6), so it is B's although A scores higher.
    assert out.labels.tolist() == [[1, -1, -1]]
    assert out.gt_index.tolist() == [[1, -1, -1]]
    torch.testing.assert_close(out.scores, torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(out.boxes[0, 0], torch.tensor([10.0, 0, 50, 40]))


def test_empty_image_padding_and_crowd_make_no_positives():
    points = _boxes([[4, 4], [12, 12]])
    preds = _boxes([[0, 0, 16, 16], [8, 8, 16, 16]]).expand(2, 2, 4)
    scores = torch.full((2, 2, 3), 0.5)
    gts = torch.tensor([[[0.0, 0, 16, 16], [0, 0, 16, 16]], [[0, 0, 0, 0], [0, 0, 0, 0]]])
    labels = torch.tensor([[2, 1], [-1, -1]])
    valid = torch.tensor([[True, False], [False, False]])  # a crowd box; image 1 has only padding
    out = TaskAlignedAssigner()(scores, preds, points, gts, labels, valid)
    assert out.labels.tolist() == [[2, 2], [-1, -1]]
    assert out.gt_index.tolist() == [[0, 0], [-1, -1]]
    assert (out.scores[1] == 0).all() and (out.boxes[1] == 0).all()


def test_no_boxes_in_the_batch():
    out = TaskAlignedAssigner()(
        torch.rand(2, 5, 3), torch.rand(2, 5, 4), torch.rand(5, 2), torch.zeros(2, 0, 4),
        torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.bool),
    )
    assert out.labels.shape == out.gt_index.shape == out.scores.shape == (2, 5) and out.boxes.shape == (2, 5, 4)
    assert (out.labels == -1).all() and (out.gt_index == -1).all() and (out.scores == 0).all()


def _random_image(generator, num_boxes, num_points, num_classes):
    xy = torch.rand(num_boxes, 2, generator=generator) * 48
    wh = 8 + torch.rand(num_boxes, 2, generator=generator) * 24
    gts = torch.cat((xy, xy + wh), dim=1)
    labels = torch.randint(num_classes, (num_boxes,), generator=generator)
    pxy = torch.rand(num_points, 2, generator=generator) * 64
    pred = torch.cat((pxy - 2 - 10 * torch.rand(num_points, 2, generator=generator),
                      pxy + 2 + 10 * torch.rand(num_points, 2, generator=generator)), dim=1)
    scores = torch.rand(num_points, num_classes, generator=generator)
    return gts, labels, pred, scores


def test_batched_equals_per_image():
    generator = torch.Generator().manual_seed(0)
    ys, xs = torch.meshgrid(torch.arange(8) * 8 + 4.0, torch.arange(8) * 8 + 4.0, indexing="ij")
    points = torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=1)  # (64, 2)
    images = [_random_image(generator, n, 64, 3) for n in (3, 0, 5)]
    assigner = TaskAlignedAssigner(topk=4)
    m = max(len(lab) for _, lab, _, _ in images)
    gts = torch.zeros(3, m, 4)
    labels = torch.full((3, m), -1)
    valid = torch.zeros(3, m, dtype=torch.bool)
    for b, (g, lab, _, _) in enumerate(images):
        gts[b, : len(lab)], labels[b, : len(lab)], valid[b, : len(lab)] = g, lab, True
    preds = torch.stack([p for _, _, p, _ in images])
    scores = torch.stack([s for _, _, _, s in images])
    batched = assigner(scores, preds, points, gts, labels, valid)
    assert (batched.labels >= 0).sum() > 4  # the case is not trivially empty
    for b, (g, lab, p, s) in enumerate(images):
        single = assigner(s[None], p[None], points, g[None], lab[None], torch.ones(1, len(lab), dtype=torch.bool))
        for name in AssignedTargets._fields:
            torch.testing.assert_close(getattr(batched, name)[b], getattr(single, name)[0], msg=name)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="topk"):
        TaskAlignedAssigner(topk=0)
    with pytest.raises(ValueError, match="alpha and beta"):
        TaskAlignedAssigner(alpha=-1.0)
