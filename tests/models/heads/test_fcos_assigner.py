"""Tests for detkit.models.heads.fcos_assigner on hand-computed cases."""

import torch

from detkit.models import AssignedTargets, FCOSAssigner, make_points


def _assign(assigner, points, strides, boxes, labels, valid=None):
    boxes = torch.tensor(boxes, dtype=torch.float32)[None]
    labels = torch.tensor(labels, dtype=torch.int64)[None]
    valid = torch.ones_like(labels, dtype=torch.bool) if valid is None else torch.tensor(valid)[None]
    out = assigner(points, strides, boxes, labels, valid)
    return out.labels[0], out.boxes[0]


def test_inside_box_without_center_sampling():
    points, strides = make_points([(4, 4)], [8])  # centres at 4, 12, 20, 28
    labels, matched = _assign(FCOSAssigner(center_sampling_radius=0), points, strides, [[0, 0, 16, 16]], [3])
    expected = torch.full((16,), -1)
    expected[[0, 1, 4, 5]] = 3  # (4,4), (12,4), (4,12), (12,12)
    assert torch.equal(labels, expected)
    assert torch.equal(matched[0], torch.tensor([0.0, 0, 16, 16]))
    assert torch.equal(matched[2], torch.zeros(4))


def test_center_sampling_region():
    points, strides = make_points([(4, 4)], [8])
    box = [[0, 0, 24, 24]]  # centre (12, 12); radius 0.5*8 -> region [8, 8, 16, 16]
    labels, _ = _assign(FCOSAssigner(center_sampling_radius=0.5), points, strides, box, [1])
    assert labels.tolist() == [-1] * 5 + [1] + [-1] * 10
    # A radius larger than the box is clipped to the box: same as no centre sampling.
    big, _ = _assign(FCOSAssigner(center_sampling_radius=10), points, strides, box, [1])
    plain, _ = _assign(FCOSAssigner(center_sampling_radius=0), points, strides, box, [1])
    assert torch.equal(big, plain) and (plain == 1).sum() == 9


def test_size_ranges_pick_level():
    assigner = FCOSAssigner(center_sampling_radius=0, size_multiplier=8)
    lower, upper = assigner.size_ranges(torch.tensor([8.0, 16.0, 32.0]))
    assert lower.tolist() == [0, 64, 128] and upper.tolist() == [64, 128, float("inf")]
    points = torch.tensor([[20.0, 20.0]] * 3)
    strides = torch.tensor([8.0, 16.0, 32.0])
    # ltrb at (20, 20): (20, 10, 20, 20) -> max 20 -> stride 8.
    labels, _ = _assign(assigner, points, strides, [[0, 10, 40, 40]], [0])
    assert labels.tolist() == [0, -1, -1]
    # (20, 10, 80, 10) -> max 80 -> stride 16.
    labels, _ = _assign(assigner, points, strides, [[0, 10, 100, 30]], [0])
    assert labels.tolist() == [-1, 0, -1]
    # (20, 10, 130, 10) -> max 130 -> stride 32 (open-ended top level).
    labels, _ = _assign(assigner, points, strides, [[0, 10, 150, 30]], [0])
    assert labels.tolist() == [-1, -1, 0]
    # Exactly 64 belongs to the stride-8 level (upper bound inclusive).
    labels, _ = _assign(assigner, points, strides, [[0, 10, 84, 30]], [0])
    assert labels.tolist() == [0, -1, -1]


def test_ties_go_to_smallest_box_and_invalid_ignored():
    assigner = FCOSAssigner(center_sampling_radius=0)
    points = torch.tensor([[10.0, 10.0], [30.0, 10.0]])
    strides = torch.tensor([8.0, 8.0])
    boxes = [[0, 0, 40, 20], [5, 5, 15, 15], [0, 0, 20, 20]]  # areas 800, 100, 400
    labels, matched = _assign(assigner, points, strides, boxes, [7, 8, 9])
    assert labels.tolist() == [8, 7]
    assert matched.tolist() == [[5, 5, 15, 15], [0, 0, 40, 20]]
    gt_boxes, gt_labels = torch.tensor(boxes, dtype=torch.float32)[None], torch.tensor([[7, 8, 9]])
    out = assigner(points, strides, gt_boxes, gt_labels, torch.ones(1, 3, dtype=torch.bool))
    assert out.gt_index.tolist() == [[1, 0]] and out.scores.tolist() == [[1.0, 1.0]]
    labels, _ = _assign(assigner, points, strides, boxes, [7, 8, 9], valid=[True, False, True])
    assert labels.tolist() == [9, 7]
    # Equal areas: the first box wins.
    labels, _ = _assign(assigner, points, strides, [[0, 0, 20, 20], [5, 5, 25, 25]], [1, 2])
    assert labels.tolist() == [1, -1]


def test_empty_images_and_zero_boxes():
    assigner = FCOSAssigner()
    points, strides = make_points([(4, 4), (2, 2)], [8, 16])
    boxes = torch.tensor([[[0.0, 0, 32, 32]], [[0.0, 0, 0, 0]]])
    labels = torch.tensor([[2], [-1]])
    valid = torch.tensor([[True], [False]])
    out = assigner(points, strides, boxes, labels, valid)
    assert isinstance(out, AssignedTargets)
    assert (out.labels[0] == 2).any() and (out.labels[1] == -1).all()
    assert (out.boxes[1] == 0).all()
    # Scores are the positives (hard assignment), gt_index the box each positive took.
    assert torch.equal(out.scores, (out.labels >= 0).float())
    assert torch.equal(out.gt_index, torch.where(out.labels >= 0, 0, -1))
    # M = 0 for the whole batch.
    out = assigner(
        points, strides, torch.zeros(3, 0, 4), torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 0, dtype=torch.bool)
    )
    assert out.labels.shape == out.gt_index.shape == out.scores.shape == (3, 20) and out.labels.dtype == torch.int64
    assert (out.labels == -1).all() and (out.gt_index == -1).all() and (out.scores == 0).all()
    assert out.boxes.shape == (3, 20, 4) and (out.boxes == 0).all()


def test_batched_equals_per_image():
    torch.manual_seed(0)
    assigner = FCOSAssigner()
    points, strides = make_points([(16, 16), (8, 8), (4, 4), (2, 2), (1, 1)], [8, 16, 32, 64, 128])
    counts = [5, 0, 3, 8]
    per_image, boxes_list, labels_list = [], [], []
    for n in counts:
        xy = torch.rand(n, 2) * 100
        wh = torch.rand(n, 2) * 120 + 4
        boxes = torch.cat((xy, xy + wh), dim=1)
        labels = torch.randint(0, 5, (n,))
        boxes_list.append(boxes)
        labels_list.append(labels)
        per_image.append(assigner(points, strides, boxes[None], labels[None], torch.ones(1, n, dtype=torch.bool)))
    m = max(counts)
    gt_boxes = torch.zeros(len(counts), m, 4)
    gt_labels = torch.full((len(counts), m), -1)
    gt_valid = torch.zeros(len(counts), m, dtype=torch.bool)
    for i, n in enumerate(counts):
        gt_boxes[i, :n], gt_labels[i, :n], gt_valid[i, :n] = boxes_list[i], labels_list[i], True
    batched = assigner(points, strides, gt_boxes, gt_labels, gt_valid)
    assert (batched.labels >= 0).sum() > 10  # the case is not trivially empty
    for i, single in enumerate(per_image):
        for name in AssignedTargets._fields:
            assert torch.equal(getattr(batched, name)[i], getattr(single, name)[0]), name
