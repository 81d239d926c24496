"""Backbones: multi-scale feature extractors that declare their outputs in ``feature_info``."""

from __future__ import annotations

import os
import warnings
from functools import partial
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn
from torchvision import models as tvm
from torchvision.models import WeightsEnum
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.models.layers import ActivationName, ConvNormAct, NormName

__all__ = [
    "FeatureInfo",
    "Backbone",
    "ResNetBackbone",
    "ResNetBody",
    "MobileNetV2Backbone",
    "MobileNetV3Backbone",
    "PlainConvBackbone",
    "StagedBackbone",
    "resolve_weights",
    "load_state_dict_file",
]

_WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".tar"}


class FeatureInfo(NamedTuple):
    """Channels and stride (input pixels per feature cell) of one output feature map."""

    channels: int
    stride: int


class Backbone(nn.Module):
    """Base class: ``forward(images FloatTensor[B, 3, H, W])`` -> list of feature maps.

    Subclasses set ``self.feature_info`` (ordered by increasing stride, one entry per returned
    map) and ``self.frozen_modules`` (kept in eval mode by :meth:`train`). Images arrive already
    mean/std normalised.
    """

    feature_info: list[FeatureInfo]

    def __init__(self) -> None:
        super().__init__()
        self.feature_info = []
        self.frozen_modules: list[nn.Module] = []

    def freeze(self, modules: list[nn.Module]) -> None:
        """Stop gradients into ``modules`` and keep their norm statistics fixed."""
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
            module.eval()
        self.frozen_modules = list(modules)

    def train(self, mode: bool = True) -> Backbone:
        """Switch train/eval mode, keeping frozen modules in eval mode."""
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self


def resolve_weights(weights: str, enum_cls: type[WeightsEnum]) -> WeightsEnum:
    """Turn ``"IMAGENET1K_V1"``, ``"DEFAULT"`` or ``"ResNet50_Weights.IMAGENET1K_V2"`` into an enum.

    Raises:
        ValueError: The name is not a member of ``enum_cls``; the message lists the valid names.
    """
    valid = [m.name for m in enum_cls] + ["DEFAULT"]
    prefix, _, member = weights.rpartition(".")
    if prefix and prefix != enum_cls.__name__:
        raise ValueError(
            f"weights {weights!r} belong to {prefix}, expected {enum_cls.__name__}; valid names: "
            + ", ".join(f"{enum_cls.__name__}.{v}" for v in valid)
        )
    try:
        return enum_cls[member]
    except KeyError:
        raise ValueError(
            f"unknown weights {weights!r} for {enum_cls.__name__}; valid names: {', '.join(valid)} "
            "(or a path to a local state-dict file)"
        ) from None


def _looks_like_path(weights: str) -> bool:
    return os.sep in weights or "/" in weights or Path(weights).suffix in _WEIGHT_SUFFIXES or Path(weights).exists()


def load_state_dict_file(
    model: nn.Module, path: str | os.PathLike, ignore_prefixes: tuple[str, ...] = ()
) -> None:
    """Load a local state dict into ``model`` (never downloads).

    Accepts a raw state dict or ``{"state_dict": ...}``; strips a leading ``module.`` (DDP) or
    ``body.`` (a saved detkit backbone) from keys.

    Args:
        model: Module to load into (a full torchvision classifier).
        path: File written by ``torch.save``.
        ignore_prefixes: Key prefixes of ``model`` that the file may lack (e.g. the classifier).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: The file is not a state dict, or ``model`` keys are missing from it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    for prefix in ("module.", "body."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefixes)]
    if missing:
        raise ValueError(f"weights file {path} lacks {len(missing)} keys of {type(model).__name__}: {missing[:10]}")
    unexpected = [k for k in result.unexpected_keys if not k.startswith(ignore_prefixes)]
    if unexpected:
        warnings.warn(f"weights file {path} has {len(unexpected)} unused keys: {unexpected[:10]}", stacklevel=2)


def _build_torchvision(
    builder, enum_cls: type[WeightsEnum], weights: str | None, ignore_prefixes: tuple[str, ...], **kwargs
) -> nn.Module:
    """Build a torchvision classifier with named weights (download) or a local file (load)."""
    if weights is None:
        return builder(weights=None, **kwargs)
    if _looks_like_path(weights):
        model = builder(weights=None, **kwargs)
        load_state_dict_file(model, weights, ignore_prefixes)
        return model
    return builder(weights=resolve_weights(weights, enum_cls), **kwargs)


_RESNETS = {
    18: (tvm.resnet18, tvm.ResNet18_Weights),
    34: (tvm.resnet34, tvm.ResNet34_Weights),
    50: (tvm.resnet50, tvm.ResNet50_Weights),
    101: (tvm.resnet101, tvm.ResNet101_Weights),
}


class ResNetBackbone(Backbone):
    """Torchvision ResNet returning C3, C4, C5 (strides 8, 16, 32)."""

    def __init__(
        self,
        depth: Literal[18, 34, 50, 101] = 50,
        weights: str | None = None,
        frozen_stages: int = 1,
        freeze_norm: bool = True,
    ) -> None:
        """Build the backbone.

        Args:
            depth: ResNet depth.
            weights: ``None`` (random init), a torchvision weights name such as ``"IMAGENET1K_V1"``,
                ``"DEFAULT"`` or ``"ResNet50_Weights.IMAGENET1K_V2"`` (downloaded by torchvision),
                or a path to a local state-dict file.
            frozen_stages: ``0`` trains everything; ``k >= 1`` freezes the stem and the first ``k``
                of the four residual stages (``layer1`` .. ``layer4``).
            freeze_norm: Replace every BatchNorm with ``FrozenBatchNorm2d`` (fixed statistics and
                affine parameters), the usual choice for small detection batches.
        """
        super().__init__()
        if depth not in _RESNETS:
            raise ValueError(f"depth must be one of {sorted(_RESNETS)}, got {depth!r}")
        if not 0 <= frozen_stages <= 4:
            raise ValueError(f"frozen_stages must be in [0, 4] for ResNet, got {frozen_stages}")
        builder, enum_cls = _RESNETS[depth]
        norm_layer = FrozenBatchNorm2d if freeze_norm else nn.BatchNorm2d
        net = _build_torchvision(builder, enum_cls, weights, ("fc.",), norm_layer=norm_layer)
        self.body = ResNetBody(net)
        expansion = 4 if depth >= 50 else 1
        self.feature_info = [
            FeatureInfo(128 * expansion, 8),
            FeatureInfo(256 * expansion, 16),
            FeatureInfo(512 * expansion, 32),
        ]
        if frozen_stages:
            stem = [self.body.conv1, self.body.bn1]
            stages = [getattr(self.body, f"layer{i}") for i in range(1, frozen_stages + 1)]
            self.freeze(stem + stages)

    def forward(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> ``[C3 (B, c, H/8, W/8), C4, C5]``."""
        return self.body(images)


class ResNetBody(nn.ModuleDict):
    """A torchvision ResNet without its pooling and classifier: the stem (``conv1``, ``bn1``,
    ``relu``, ``maxpool``) and ``layer1`` .. ``layer4`` under their torchvision names, so weights
    keep torchvision's keys (``conv1.weight``, ``layer4.1.conv2.weight``, ...). ``forward`` returns
    the outputs of ``layer2``, ``layer3``, ``layer4`` (C3, C4, C5 at strides 8, 16, 32)."""

    STEM = ("conv1", "bn1", "relu", "maxpool")
    STAGES = ("layer1", "layer2", "layer3", "layer4")
    RETURNED = ("layer2", "layer3", "layer4")

    def __init__(self, net: tvm.ResNet) -> None:
        """Keep the stem and stages of ``net`` (its own modules, not copies)."""
        super().__init__({name: getattr(net, name) for name in self.STEM + self.STAGES})

    def forward(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> ``[C3, C4, C5]``."""
        outs = []
        x = images
        for name, module in self.items():
            x = module(x)
            if name in self.RETURNED:
                outs.append(x)
        return outs


class _MobileNetBackbone(Backbone):
    """A torchvision MobileNet's ``features`` cut into the stem and five stages (strides 2 .. 32);
    returns the outputs of the last three (strides 8, 16, 32)."""

    # Subclasses: index into ``net.features`` where the stem and each stage (strides 2..32) end.
    _STAGE_ENDS: tuple[int, ...]

    def _set_stages(self, features: nn.Sequential, frozen_stages: int) -> None:
        """Cut ``features`` at :attr:`_STAGE_ENDS` into ``self.stages`` and freeze the stem and the
        first ``frozen_stages`` stages."""
        ends = self._STAGE_ENDS
        self.stages = nn.ModuleList(features[ends[i - 1] + 1 if i else 0 : ends[i] + 1] for i in range(len(ends)))
        if frozen_stages:
            self.freeze(list(self.stages[: frozen_stages + 1]))

    def forward(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> three maps at strides 8, 16, 32."""
        outs = []
        x = images
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= 3:
                outs.append(x)
        return outs


def _check_frozen_stages(frozen_stages: int, name: str) -> None:
    if not 0 <= frozen_stages <= 5:
        raise ValueError(f"frozen_stages must be in [0, 5] for {name}, got {frozen_stages}")


class MobileNetV3Backbone(_MobileNetBackbone):
    """Torchvision MobileNetV3-Large returning features at strides 8, 16, 32 (40, 112, 960 channels)."""

    # Indices into ``mobilenet_v3_large().features`` where each stage ends: stem, then strides 2..32.
    _STAGE_ENDS = (0, 1, 3, 6, 12, 16)

    def __init__(self, weights: str | None = None, frozen_stages: int = 0, freeze_norm: bool = False) -> None:
        """Build the backbone.

        Args:
            weights: ``None`` (random init), a torchvision weights name such as ``"IMAGENET1K_V1"``
                or ``"MobileNet_V3_Large_Weights.IMAGENET1K_V2"``, or a path to a local state-dict file.
            frozen_stages: ``0`` trains everything; ``k >= 1`` freezes the stem and the first ``k``
                of the five stages (strides 2, 4, 8, 16, 32).
            freeze_norm: Replace every BatchNorm with ``FrozenBatchNorm2d``.
        """
        super().__init__()
        _check_frozen_stages(frozen_stages, "MobileNetV3")
        kwargs = {"norm_layer": partial(FrozenBatchNorm2d, eps=0.001)} if freeze_norm else {}
        net = _build_torchvision(
            tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights, weights, ("classifier.",), **kwargs
        )
        self.feature_info = [FeatureInfo(40, 8), FeatureInfo(112, 16), FeatureInfo(960, 32)]
        self._set_stages(net.features, frozen_stages)


class MobileNetV2Backbone(_MobileNetBackbone):
    """Torchvision MobileNetV2 returning features at strides 8, 16, 32 (32, 96, 1280 channels).

    The stride-32 map is the output of the final 1x1 convolution (320 -> 1280 channels), the
    features torchvision's classifier pools, as :class:`MobileNetV3Backbone` returns V3's.
    """

    # Indices into ``mobilenet_v2().features`` where each stage ends: stem, then strides 2..32.
    _STAGE_ENDS = (0, 1, 3, 6, 13, 18)

    def __init__(self, weights: str | None = None, frozen_stages: int = 0, freeze_norm: bool = False) -> None:
        """Build the backbone.

        Args:
            weights: ``None`` (random init), a torchvision weights name such as ``"IMAGENET1K_V1"``,
                ``"DEFAULT"`` or ``"MobileNet_V2_Weights.IMAGENET1K_V2"`` (downloaded by torchvision),
                or a path to a local state-dict file (e.g. torchvision's ``mobilenet_v2-b0353104.pth``).
            frozen_stages: ``0`` trains everything; ``k >= 1`` freezes the stem and the first ``k``
                of the five stages (strides 2, 4, 8, 16, 32).
            freeze_norm: Replace every BatchNorm with ``FrozenBatchNorm2d`` (fixed statistics and
                affine parameters), the usual choice for small detection batches.
        """
        super().__init__()
        _check_frozen_stages(frozen_stages, "MobileNetV2")
        kwargs = {"norm_layer": FrozenBatchNorm2d} if freeze_norm else {}
        net = _build_torchvision(tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, weights, ("classifier.",), **kwargs)
        self.feature_info = [FeatureInfo(32, 8), FeatureInfo(96, 16), FeatureInfo(1280, 32)]
        self._set_stages(net.features, frozen_stages)


class StagedBackbone(Backbone):
    """A stem and stages that each halve the resolution (strides ``2, 4, ..., 2**n`` for ``n``
    widths, stem included); returns the last three stage outputs. Subclasses build ``stem`` and
    ``stages`` and call :meth:`set_stages`."""

    def set_stages(self, stem: nn.Module, stages: list[nn.Module], widths: list[int]) -> None:
        """Keep ``stem`` and ``stages`` (``widths``: the stem's then each stage's output channels)."""
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        n = len(widths)
        self.feature_info = [FeatureInfo(widths[i], 2 ** (i + 1)) for i in range(n - 3, n)]

    def forward(self, images: Tensor) -> list[Tensor]:
        """``(B, 3, H, W)`` -> the last three stage outputs ``(B, widths[i], H / 2**(i+1), W / 2**(i+1))``."""
        x = self.stem(images)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs[-3:]


class PlainConvBackbone(StagedBackbone):
    """Small, fast, residual-free stack of ``ConvNormAct``; for CPU demos and tests."""

    def __init__(
        self,
        widths: list[int] = [16, 32, 64, 128, 128],  # noqa: B006 (read-only, CLI-friendly default)
        blocks_per_stage: int = 1,
        kernel_size: int = 3,
        dilation: int = 1,
        groups: int = 1,
        norm: NormName = "batch",
        activation: ActivationName = "relu",
        width_multiple: float = 1.0,
        downsample: Literal["conv", "maxpool"] = "conv",
    ) -> None:
        """Build the backbone.

        Args:
            widths: Stem width followed by one width per stage. The stem and every stage halve the
                resolution, so ``len(widths) = n`` gives strides ``2, 4, ..., 2**n``; the last three
                stages are returned (strides 8, 16, 32 for the default five widths).
            blocks_per_stage: Extra stride-1 convolutions after each stage's downsampling.
            kernel_size: Kernel size of every convolution.
            dilation: Dilation of the stride-1 convolutions.
            groups: Groups of the stride-1 convolutions (must divide the stage widths).
            norm: Normalisation after each convolution.
            activation: Activation after each normalisation.
            width_multiple: Every width times this, rounded to a multiple of 8 (at least 8): one knob
                for the whole network's width (the neck is built from the resulting widths).
            downsample: How each stage halves the resolution: ``conv``, a stride-2 ``kernel_size``
                convolution; ``maxpool``, a 2x2 max-pool then a 1x1 convolution to the stage width.
        """
        super().__init__()
        if width_multiple <= 0:
            raise ValueError(f"width_multiple must be > 0, got {width_multiple}")
        if downsample not in ("conv", "maxpool"):
            raise ValueError(f"downsample must be 'conv' or 'maxpool', got {downsample!r}")
        widths = list(widths) if width_multiple == 1.0 else [max(8, round(w * width_multiple / 8) * 8) for w in widths]
        if len(widths) < 4:
            raise ValueError(f"widths needs a stem and at least three stages (>= 4 entries), got {widths}")
        if blocks_per_stage < 0:
            raise ValueError(f"blocks_per_stage must be >= 0, got {blocks_per_stage}")
        block = partial(ConvNormAct, kernel_size=kernel_size, norm=norm, activation=activation)
        stem = block(3, widths[0], stride=2)
        stages = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            if downsample == "conv":
                layers: list[nn.Module] = [block(c_in, c_out, stride=2)]
            else:
                layers = [nn.MaxPool2d(2, 2, ceil_mode=True), block(c_in, c_out, kernel_size=1)]
            layers += [block(c_out, c_out, dilation=dilation, groups=groups) for _ in range(blocks_per_stage)]
            stages.append(nn.Sequential(*layers))
        self.set_stages(stem, stages, widths)
