"""The neck interface: a module between backbone and head that declares its inputs and outputs."""

from __future__ import annotations

from torch import Tensor, nn

from detkit.models.backbones import FeatureInfo

__all__ = ["Neck"]


class Neck(nn.Module):
    """Base class: built as ``Neck(in_features, **options)`` from the backbone's ``feature_info``.

    ``forward(features: list[Tensor]) -> list[Tensor]`` maps the backbone's maps (one per
    ``in_features`` entry) to the maps the head sees, one per ``feature_info`` entry (strides
    increasing), exactly as a :class:`~detkit.models.Backbone` declares its outputs.

    Attributes:
        in_features: Channels and stride of each input map.
        feature_info: Channels and stride of each output map.
    """

    in_features: list[FeatureInfo]
    feature_info: list[FeatureInfo]

    def forward(self, features: list[Tensor]) -> list[Tensor]:  # pragma: no cover - interface
        """``[(B, C_i, H_i, W_i)]`` per ``in_features`` entry -> one map per ``feature_info`` entry."""
        raise NotImplementedError
