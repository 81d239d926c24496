"""Necks: modules between backbone and head, built from the backbone's ``feature_info``."""

from detkit.models.necks.base import Neck
from detkit.models.necks.fpn import FPN, LastLevelP6

__all__ = ["FPN", "LastLevelP6", "Neck"]
