"""torchvision's COCO detectors as detkit compositions, and their state dicts mapped tensor by tensor into them.

Two torchvision detectors are of detkit's kind (backbone + FPN + dense head) and publish COCO
weights: ``fcos_resnet50_fpn`` (``COCO_V1``, box AP 39.2) and ``retinanet_resnet50_fpn_v2``
(``COCO_V1``, box AP 41.5). :func:`fcos_resnet50_fpn` and :func:`retinanet_resnet50_fpn_v2` build the
same networks from detkit parts; :func:`convert_state_dict` renames torchvision's tensors to
detkit's (an unknown name is an error naming it) and :func:`load_torchvision_weights` loads them,
re-initialising only the classifier when the class count differs (fine-tuning on other classes).

A weights source is ``"torchvision:<model>:<WEIGHTS>"`` (downloaded by torchvision's weights API
and cached by torch hub) or ``"torchvision:<model>:<path>"`` (a local ``.pth`` of the torchvision
model's ``state_dict``: nothing is downloaded).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import get_model_weights

from detkit.models.backbones import ResNetBackbone, resolve_weights
from detkit.models.detector import Detector
from detkit.models.heads.anchors import AnchorGrid
from detkit.models.heads.dense_decoder import DenseDecoder
from detkit.models.heads.fcos import FCOSHead
from detkit.models.heads.retinanet import RetinaNetHead
from detkit.models.necks.fpn import FPN

__all__ = [
    "TORCHVISION_DETECTORS",
    "convert_state_dict",
    "fcos_resnet50_fpn",
    "load_torchvision_weights",
    "parse_torchvision_source",
    "read_torchvision_state",
    "retinanet_resnet50_fpn_v2",
    "torchvision_class_names",
    "torchvision_num_classes",
]


def fcos_resnet50_fpn(
    num_classes: int = 91, backbone_weights: str | None = None, frozen_stages: int = 1, freeze_norm: bool = True
) -> Detector:
    """torchvision's ``fcos_resnet50_fpn`` built from detkit parts (same tensors, same outputs).

    ResNet-50 (C3-C5, frozen BatchNorm) -> FPN with P6, P7 from P5 -> FCOS head with GroupNorm
    towers whose convolutions keep a bias, points at the cells' top-left corners (torchvision's anchor
    positions), per-level scales at 1 (torchvision has none) and torchvision's decoding: score > 0.2,
    top 1000 per level, NMS IoU 0.6, 100 detections.

    Args:
        num_classes: Classes of the classifier (91: torchvision's COCO ids, 0 and the 10 unused ids never fire).
        backbone_weights: ImageNet weights of the ResNet-50 (see :class:`ResNetBackbone`), ``None``
            when the detector's weights are loaded next.
        frozen_stages: Frozen ResNet stages (1: the stem and ``layer1``, torchvision's 3 trainable layers).
        freeze_norm: Frozen BatchNorm (torchvision's choice for pretrained backbones).
    """
    decoder = DenseDecoder(score_threshold=0.2, topk_per_level=1000, nms_iou=0.6, max_detections=100)
    return Detector(
        num_classes,
        ResNetBackbone(50, weights=backbone_weights, frozen_stages=frozen_stages, freeze_norm=freeze_norm),
        neck=partial(FPN, out_channels=256, extra_levels=2, extra_from="output"),
        head=partial(FCOSHead, num_convs=4, norm="group", tower_bias=True, point_offset=0.0, decoder=decoder),
    )


def retinanet_resnet50_fpn_v2(
    num_classes: int = 91, backbone_weights: str | None = None, frozen_stages: int = 1, freeze_norm: bool = True
) -> Detector:
    """torchvision's ``retinanet_resnet50_fpn_v2`` built from detkit parts (same tensors, same outputs).

    ResNet-50 (C3-C5) -> FPN with P6 from C5 and P7 -> RetinaNet head with GroupNorm towers, 9
    anchors per cell, GIoU loss, and torchvision's decoding: score > 0.05, top 1000 per level, NMS IoU
    0.5, 300 detections. torchvision trains this one's BatchNorm; frozen (``freeze_norm=True``) it
    computes the same in eval mode and suits small fine-tuning batches.

    Args:
        num_classes: Classes of the classifier (91: torchvision's COCO ids).
        backbone_weights: ImageNet weights of the ResNet-50, ``None`` when the detector's weights are loaded next.
        frozen_stages: Frozen ResNet stages (1: the stem and ``layer1``).
        freeze_norm: Frozen BatchNorm in the backbone.
    """
    return Detector(
        num_classes,
        ResNetBackbone(50, weights=backbone_weights, frozen_stages=frozen_stages, freeze_norm=freeze_norm),
        neck=partial(FPN, out_channels=256, extra_levels=2, extra_from="input"),
        head=partial(RetinaNetHead, num_convs=4, norm="group"),
    )


#: The torchvision detectors detkit can import, by torchvision's model name.
TORCHVISION_DETECTORS: dict[str, Callable[..., Detector]] = {
    "fcos_resnet50_fpn": fcos_resnet50_fpn,
    "retinanet_resnet50_fpn_v2": retinanet_resnet50_fpn_v2,
}


def _tower_rules(branch: str, tower: str, fcos: bool) -> list[tuple[str, str]]:
    """Rename rules of one head tower: FCOS's flat ``[conv, norm, relu] * 4`` or v2's ``Conv2dNormActivation``s."""
    if fcos:  # conv.{3i} -> tower.{i}.conv, conv.{3i+1} -> tower.{i}.norm
        return [(rf"head\.{branch}\.conv\.(\d+)\.(weight|bias)$", tower)]
    return [
        (rf"head\.{branch}\.conv\.(\d+)\.0\.weight$", rf"head.{tower}.\1.conv.weight"),
        (rf"head\.{branch}\.conv\.(\d+)\.1\.(weight|bias)$", rf"head.{tower}.\1.norm.\2"),
    ]


def _rules(model: str) -> list[tuple[str, str]]:
    fcos = model == "fcos_resnet50_fpn"
    rules = [(r"backbone\.body\.(.+)$", r"backbone.body.\1"), (r"backbone\.fpn\.(.+)$", r"neck.fpn.\1")]
    rules += _tower_rules("classification_head", "cls_tower", fcos) + _tower_rules("regression_head", "box_tower", fcos)
    rules += [
        (r"head\.classification_head\.cls_logits\.(weight|bias)$", r"head.cls_logits.\1"),
        (r"head\.regression_head\.bbox_reg\.(weight|bias)$", r"head.box_reg.\1"),
    ]
    if fcos:
        rules.append((r"head\.regression_head\.bbox_ctrness\.(weight|bias)$", r"head.quality_logits.\1"))
    return rules


def _rename(name: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, target in rules:
        match = re.match(pattern, name)
        if match is None:
            continue
        if target in ("cls_tower", "box_tower"):  # FCOS's flat tower: index 3i is the conv, 3i+1 the norm
            index, kind = int(match.group(1)), match.group(2)
            if index % 3 == 2:
                return None
            return f"head.{target}.{index // 3}.{'conv' if index % 3 == 0 else 'norm'}.{kind}"
        return match.expand(target)
    return None


def _check_model(model: str) -> None:
    if model not in TORCHVISION_DETECTORS:
        raise ValueError(f"unknown torchvision detector {model!r}; detkit imports {', '.join(TORCHVISION_DETECTORS)}")


def convert_state_dict(model: str, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision detector's state dict to the keys of detkit's composition of it.

    Args:
        model: ``"fcos_resnet50_fpn"`` or ``"retinanet_resnet50_fpn_v2"``.
        state: The torchvision model's ``state_dict()`` (or its published weights file).

    Returns:
        The same tensors under detkit names; FCOS also gets ``head.scales`` (ones: torchvision's
        FCOS has no per-level scale, and 1 is the identity).

    Raises:
        ValueError: ``model`` is not importable, or a tensor of ``state`` has no place in detkit's
            composition (the message names it).
    """
    _check_model(model)
    rules = _rules(model)
    converted: dict[str, Tensor] = {}
    unknown = []
    for name, value in state.items():
        new = _rename(name, rules)
        if new is None:
            unknown.append(name)
        else:
            converted[new] = value
    if unknown:
        raise ValueError(f"{len(unknown)} tensors of the {model} state dict have no place in detkit's {model}: {', '.join(unknown[:10])}")
    if model == "fcos_resnet50_fpn":
        converted["head.scales"] = torch.ones(5)
    return converted


def parse_torchvision_source(source: str) -> tuple[str, str]:
    """``"torchvision:<model>:<WEIGHTS or path>"`` -> ``(model, weights)``; ``ValueError`` naming the problem."""
    parts = source.split(":", 2)
    if len(parts) != 3 or parts[0] != "torchvision" or not parts[2]:
        raise ValueError(
            f"weights source {source!r} is not 'torchvision:<model>:<WEIGHTS or path>', "
            "e.g. 'torchvision:fcos_resnet50_fpn:COCO_V1' or 'torchvision:fcos_resnet50_fpn:fcos.pth'"
        )
    _check_model(parts[1])
    return parts[1], parts[2]


def _is_path(weights: str) -> bool:
    return "/" in weights or "\\" in weights or Path(weights).suffix != "" or Path(weights).exists()


def read_torchvision_state(source: str) -> tuple[str, dict[str, Tensor]]:
    """The torchvision state dict a ``"torchvision:..."`` source names: ``(model, state)``.

    A weights name (``COCO_V1``, ``DEFAULT``) is fetched through torchvision's weights API (a
    download on first use, cached by torch hub); a path is read with ``weights_only=True``.

    Raises:
        FileNotFoundError: The path does not exist.
        ValueError: A malformed source, an unknown model or weights name, or a file that is not a state dict.
    """
    model, weights = parse_torchvision_source(source)
    if _is_path(weights):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"torchvision weights file not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):  # torchvision's training references
            state = state["model"]
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ValueError(f"{path} does not hold a state dict of tensors")
        return model, state
    enum = resolve_weights(weights, get_model_weights(model))
    return model, enum.get_state_dict(progress=True, check_hash=True)


def torchvision_class_names(model: str, weights: str = "COCO_V1") -> list[str]:
    """The class names of published weights, one per classifier output (COCO: 91, with ``__background__`` and ``N/A``)."""
    _check_model(model)
    return list(resolve_weights(weights, get_model_weights(model)).meta["categories"])


def torchvision_num_classes(model: str, state: dict[str, Tensor]) -> int:
    """Classes of a torchvision detector's state dict: its classifier's outputs over the anchors per cell
    (1 for FCOS, the default :class:`AnchorGrid`'s 9 for RetinaNet, as the compositions above build them)."""
    _check_model(model)
    per_cell = 1 if model == "fcos_resnet50_fpn" else AnchorGrid().num_per_location
    return state["head.classification_head.cls_logits.bias"].shape[0] // per_cell


def load_torchvision_weights(detector: nn.Module, model: str, state: dict[str, Tensor]) -> tuple[list[str], list[str]]:
    """Load a torchvision detector's state dict into detkit's composition of it, strictly.

    Every tensor must have a place in ``detector`` and every tensor of ``detector`` must be given,
    with the same shape; only the classifier (``head.cls_logits``) may differ in shape (another class
    list), and then keeps the values it was built with (its prior-probability initialisation).
    BatchNorm's ``num_batches_tracked`` counters may be absent on either side (frozen BatchNorm has none).

    Returns:
        ``(loaded, reinitialised)`` detector tensor names.

    Raises:
        ValueError: A tensor without a place, a detector tensor not given, or a shape that differs
            outside the classifier; the message names them.
    """
    converted = convert_state_dict(model, state)
    own = detector.state_dict()
    counters = "num_batches_tracked"
    unexpected = [k for k in converted if k not in own and not k.endswith(counters)]
    missing = [k for k in own if k not in converted and not k.endswith(counters)]
    mismatched = {k: (tuple(converted[k].shape), tuple(v.shape)) for k, v in own.items()
                  if k in converted and converted[k].shape != v.shape}  # fmt: skip
    wrong = {k: s for k, s in mismatched.items() if not k.startswith("head.cls_logits.")}
    problems = []
    if unexpected:
        problems.append(f"unexpected (no place in the detector): {', '.join(unexpected[:10])}")
    if missing:
        problems.append(f"missing (the detector has them, the weights do not): {', '.join(missing[:10])}")
    if wrong:
        problems.append("shapes differ: " + ", ".join(f"{k} {list(a)} != {list(b)}" for k, (a, b) in list(wrong.items())[:10]))
    if problems:
        raise ValueError(f"the {model} weights do not fit this detector; " + "; ".join(problems))
    loadable = {k: v for k, v in converted.items() if k in own and k not in mismatched}
    detector.load_state_dict(loadable, strict=False)
    return sorted(loadable), sorted(mismatched)
