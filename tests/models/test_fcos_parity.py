"""Parity of the composed FCOS detector with the format-1 (flat-argument) Detector it replaced.

``data/fcos_format1_reference.pt`` holds the old detector's config, weights, a fixed batch and its
losses and detections (written by ``data/make_fcos_format1_reference.py`` at commit 6409f5a). The new
detector is built from that config and state dict through :func:`detkit.checkpoints.migrate_checkpoint`,
the code that upgrades format-1 checkpoints, and must reproduce the numbers.
"""

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch

from detkit.checkpoints import migrate_checkpoint
from detkit.config import instantiate
from detkit.models import FPN, DenseDecoder, Detector, FCOSHead, PlainConvBackbone

REFERENCE = Path(__file__).parent / "data" / "fcos_format1_reference.pt"


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, map_location="cpu", weights_only=True)


def build_detector(config, num_classes):
    """The detector a checkpoint's ``detector`` config describes, built as detkit builds every config."""
    return instantiate(Callable[[int], Detector], config)(num_classes)


def _migrated(reference):
    """The fixture as a format-1 checkpoint dict, migrated, then built and loaded like a checkpoint."""
    checkpoint = {
        "detkit": {
            "format_version": 1,
            "num_classes": reference["num_classes"],
            "class_names": ["a", "b", "c"],
            "detector": {"class_path": "detkit.models.Detector", "init_args": reference["detector_init_args"]},
            "input_size": 128,
        },
        "state_dict": {f"detector.{k}": v for k, v in reference["state_dict"].items()},
    }
    checkpoint = migrate_checkpoint(checkpoint)
    meta = checkpoint["detkit"]
    detector = build_detector(meta["detector"], meta["num_classes"])
    detector.load_state_dict({k.removeprefix("detector."): v for k, v in checkpoint["state_dict"].items()})
    return detector


def _by_hand(reference):
    """The same model written with the new API in Python, loading the renamed weights."""
    detector = Detector(
        3,
        PlainConvBackbone(widths=[8, 8, 16, 16, 16]),
        neck=partial(FPN, out_channels=16, extra_levels=1),
        head=partial(FCOSHead, num_convs=2, norm="group", decoder=DenseDecoder(score_threshold=0.01)),
        pad_to_stride=False,  # the 96 x 128 batch is not a multiple of stride 64
        channels_last=False,
    )
    state = {("neck." + k[4:] if k.startswith("fpn.") else k): v for k, v in reference["state_dict"].items()}
    detector.load_state_dict(state)
    return detector


# Format-1 checkpoints may migrate to the decoder's old class_path (the deprecated FCOSDecoder alias).
@pytest.mark.filterwarnings("ignore:FCOSDecoder was renamed:DeprecationWarning")
@pytest.mark.parametrize("build", [_migrated, _by_hand], ids=["migrated", "by_hand"])
def test_losses_and_detections_equal_format1(reference, build):
    detector = build(reference)
    images = reference["images_uint8"].float() / 255
    # Detections first: the reference predicted with the BN statistics its state dict holds
    # (saved after its training-mode loss call), and a training-mode call would update them.
    detector.eval()
    detections = detector.predict_batch(images)
    detector.train()
    losses = detector.loss(images, reference["targets"])

    assert set(losses) == set(reference["losses"])
    for key, expected in reference["losses"].items():
        torch.testing.assert_close(losses[key].detach(), expected, rtol=0, atol=1e-5, msg=key)
    assert len(detections) == len(reference["detections"]) == 2
    for got, expected in zip(detections, reference["detections"]):
        assert len(expected["scores"]) > 10  # a real comparison, not two empty lists
        assert torch.equal(got["labels"], expected["labels"])
        torch.testing.assert_close(got["boxes"], expected["boxes"], rtol=0, atol=1e-5)
        torch.testing.assert_close(got["scores"], expected["scores"], rtol=0, atol=1e-5)
        # New: the point and level of each detection, consistent with each other.
        assert got["point_index"].shape == got["level"].shape == got["scores"].shape
        level_starts = torch.tensor([0, 12 * 16, 12 * 16 + 6 * 8, 12 * 16 + 6 * 8 + 3 * 4])
        assert torch.equal(torch.bucketize(got["point_index"], level_starts, right=True) - 1, got["level"])
