"""A new head plugs into the same Detector without touching any detkit file.

``PointHead`` is a minimal dense head written here in a few lines (one conv per output, the FCOS
assigner reused, focal + L1 losses, top-k decoding): the Detector trains and predicts with it.
"""

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from detkit.models import FPN, DenseHead, Detector, FCOSAssigner, PlainConvBackbone, batch_targets, make_points


class PointHead(DenseHead):
    def __init__(self, in_features, num_classes, top_k: int = 5):
        super().__init__(in_features, num_classes)
        channels = self.in_features[0].channels
        self.cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.assigner, self.top_k = FCOSAssigner(), top_k

    def forward(self, features):
        cls = torch.cat([self.cls(f).flatten(2).transpose(1, 2) for f in features], 1)  # (B, P, K)
        ltrb = [F.relu(self.box(f)).flatten(2).transpose(1, 2) * s for f, s in zip(features, self.strides)]
        ltrb = torch.cat(ltrb, 1)  # (B, P, 4) pixels
        points, strides = make_points([f.shape[-2:] for f in features], self.strides, device=cls.device)
        return {"cls": cls, "ltrb": ltrb, "points": points, "point_strides": strides}

    def loss(self, outputs, targets):
        gt = batch_targets(targets, outputs["cls"].device)
        labels, boxes = self.assigner(outputs["points"], outputs["point_strides"], *gt)
        pos = (labels >= 0).float()
        onehot = (labels[..., None] == torch.arange(self.num_classes, device=labels.device)).float()
        loss_cls = sigmoid_focal_loss(outputs["cls"], onehot, reduction="sum") / pos.sum().clamp(min=1)
        target_ltrb = torch.cat((outputs["points"] - boxes[..., :2], boxes[..., 2:] - outputs["points"]), -1)
        loss_box = ((outputs["ltrb"] - target_ltrb).abs().sum(-1) * pos).sum() / pos.sum().clamp(min=1) / 32
        return {"loss": loss_cls + loss_box, "loss_cls": loss_cls, "loss_box": loss_box}

    def predict(self, outputs, image_size, score_threshold=None):
        scores, index = outputs["cls"].sigmoid().flatten(1).topk(self.top_k)  # (B, k) over P * K
        point, label = index // self.num_classes, index % self.num_classes
        ltrb = torch.gather(outputs["ltrb"], 1, point[..., None].expand(-1, -1, 4))
        boxes = torch.cat((outputs["points"][point] - ltrb[..., :2], outputs["points"][point] + ltrb[..., 2:]), -1)
        boxes = boxes.clamp(min=0).minimum(boxes.new_tensor([image_size[1], image_size[0]] * 2))
        level = torch.bucketize(outputs["point_strides"][point], point.new_tensor(self.strides, dtype=torch.float32))
        return [
            {"boxes": b, "scores": s, "labels": lab, "point_index": p, "level": lvl}
            for b, s, lab, p, lvl in zip(boxes, scores, label, point, level)
        ]


def test_new_head_trains_and_predicts_through_detector():
    torch.manual_seed(0)
    backbone = PlainConvBackbone(widths=[8, 16, 24, 32, 48])
    detector = Detector(2, backbone, partial(FPN, out_channels=16, extra_levels=0), partial(PointHead, top_k=3))
    assert isinstance(detector.head, PointHead) and detector.head.in_features == detector.feature_info
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
    assert history[-1] < 0.5 * history[0]
    losses, detections = detector.loss_and_predict(images, targets)
    assert set(losses) == {"loss", "loss_cls", "loss_box"}
    for det in detector.predict_batch(images) + detections:
        assert det["boxes"].shape == (3, 4) and det["labels"].shape == det["point_index"].shape == det["level"].shape
        assert ((det["level"] >= 0) & (det["level"] < 3)).all()
