"""A new head plugs into the same Detector without touching any detkit file.

``PointHead`` (``tests/support/extra_head.py``) is a minimal dense head written outside detkit in a few
lines (one conv per output, the FCOS assigner reused, focal + L1 losses, top-k decoding): the Detector
trains and predicts with it. ``tests/test_extensions.py`` runs it through a config, the CLI and a checkpoint.
"""

from functools import partial

import torch
from extra_head import PointHead  # tests/support, on the path through tests/conftest.py

from detkit.models import FPN, Detector, PlainConvBackbone


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
