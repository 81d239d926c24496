"""Deprecated module path: ``FCOSDecoder`` is :class:`~detkit.models.heads.dense_decoder.DenseDecoder`.

Kept so that configs and checkpoints naming ``detkit.models.heads.fcos_decoder.FCOSDecoder`` still
load; the name warns (``DeprecationWarning``) and gives the same class.
"""

from __future__ import annotations

import warnings
from typing import Any

from detkit.models.heads.dense_decoder import DenseDecoder

__all__: list[str] = []


def deprecated_decoder_alias(module: str, name: str) -> Any:
    """``DenseDecoder`` for the old name ``FCOSDecoder``, with a ``DeprecationWarning`` (a module's ``__getattr__``)."""
    if name != "FCOSDecoder":
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        "FCOSDecoder was renamed DenseDecoder (it decodes every dense head); use "
        "detkit.models.DenseDecoder, FCOSDecoder will be removed",
        DeprecationWarning,
        stacklevel=3,
    )
    return DenseDecoder


def __getattr__(name: str) -> Any:
    return deprecated_decoder_alias(__name__, name)
