"""Reference outputs of the pre-refactor (format 1) FCOS Detector, for the parity test of issue 8.

Ran once at commit 6409f5a (the flat-argument Detector); it does not run against the composed Detector.
"""
import torch
from detkit.models import Detector, PlainConvBackbone

torch.manual_seed(0)
config = {
    "fpn_channels": 16, "fpn_extra_levels": 1, "head_convs": 2, "head_norm": "group",
    "quality": "centerness", "center_sampling_radius": 1.5, "score_threshold": 0.01,
    "channels_last": False,
}
backbone_config = {"widths": [8, 8, 16, 16, 16]}
det = Detector(num_classes=3, backbone=PlainConvBackbone(**backbone_config), **config)
# Perturb all weights so the head's outputs are far from their init (not all-equal scores).
with torch.no_grad():
    for p in det.parameters():
        p.add_(torch.randn_like(p) * 0.05)
det.train()
images_u8 = torch.randint(0, 256, (2, 3, 96, 128), dtype=torch.uint8); images = images_u8.float() / 255
targets = [
    {"boxes": torch.tensor([[10.0, 12.0, 50.0, 60.0], [60.0, 20.0, 120.0, 90.0]]), "labels": torch.tensor([0, 2]),
     "iscrowd": torch.tensor([0, 0])},
    {"boxes": torch.tensor([[5.0, 5.0, 30.0, 40.0], [30.0, 30.0, 100.0, 95.0], [0.0, 0.0, 20.0, 20.0]]),
     "labels": torch.tensor([1, 1, 0]), "iscrowd": torch.tensor([0, 0, 1])},
]
losses = det.loss(images, targets)
det.eval()
with torch.no_grad():
    dets = det.predict_batch(images)
torch.save(
    {
        "detector_init_args": {**config, "backbone": {"class_path": "detkit.models.PlainConvBackbone", "init_args": backbone_config}},
        "num_classes": 3,
        "state_dict": det.state_dict(),
        "images_uint8": images_u8,
        "targets": targets,
        "losses": {k: v.detach() for k, v in losses.items()},
        "detections": dets,
    },
    "/work/main/tests/models/data/fcos_format1_reference.pt",
)
print({k: float(v) for k, v in losses.items()}, [len(d["scores"]) for d in dets], list(det.state_dict())[:3], [k for k in det.state_dict() if not k.startswith("backbone")][:40])
