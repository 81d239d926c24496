"""Fine-tuning from a detkit checkpoint: load every tensor that fits into a newly built detector.

A detector trained on one class list starts another one (other classes, another number of them,
a changed head) from its weights: tensors whose name and shape match are copied, the others keep
the values the new detector was built with (its own initialisation: e.g. the classifier's prior-
probability bias), and a :class:`LoadReport` says which is which::

    detector = instantiate_detector(config, num_classes=1, pretrained_backbone=False)
    report = load_detector_weights(detector, "runs/coco/checkpoints/last.ckpt")
    print(report)  # loaded 262 of 264 tensors; not loaded: head.cls_logits.weight (shape ...), ...

A torchvision COCO detector starts one the same way, from ``"torchvision:<model>:<WEIGHTS or path>"``
(:mod:`detkit.models.torchvision_import`): there every tensor must fit but the classifier.

Class names are not taken from the checkpoint: the new data defines them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from detkit.checkpoints import load_detector_checkpoint
from detkit.models.torchvision_import import load_torchvision_weights, read_torchvision_state

__all__ = ["LoadReport", "load_detector_weights", "match_state_dict"]

_SHOWN = 20  # how many names of each kind ``str(report)`` lists


@dataclass
class LoadReport:
    """What :func:`load_detector_weights` copied into the detector and what it did not.

    Attributes:
        source: Where the weights came from.
        loaded: Detector tensors (state-dict names) copied from the checkpoint.
        mismatched: ``name -> (checkpoint shape, detector shape)``: present in both with different
            shapes (e.g. the classifier for another number of classes); kept as built.
        missing: Detector tensors the checkpoint lacks; kept as built.
        unused: Checkpoint tensors the detector has no place for.
        class_names: The checkpoint's class names (for the message; not applied).
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    class_names: list[str] | None = None

    @property
    def not_loaded(self) -> list[str]:
        """Detector tensors left as built (shape mismatch or absent from the checkpoint)."""
        return [*self.mismatched, *self.missing]

    @property
    def complete(self) -> bool:
        """Every detector tensor came from the checkpoint."""
        return not self.mismatched and not self.missing

    def __str__(self) -> str:
        total = len(self.loaded) + len(self.mismatched) + len(self.missing)
        classes = f" (trained on {len(self.class_names)} classes: {_names(self.class_names)})" if self.class_names else ""
        lines = [f"loaded {len(self.loaded)} of {total} detector tensors from {self.source}{classes}"]
        if self.mismatched:
            lines.append(f"not loaded, shapes differ (kept as initialised): {len(self.mismatched)}")
            shapes = [f"{name}: checkpoint {list(a)} != detector {list(b)}" for name, (a, b) in self.mismatched.items()]
            lines += _listed(shapes)
        if self.missing:
            lines.append(f"not loaded, absent from the checkpoint (kept as initialised): {len(self.missing)}")
            lines += _listed(self.missing)
        if self.unused:
            lines.append(f"checkpoint tensors the detector has no place for (ignored): {len(self.unused)}")
            lines += _listed(self.unused)
        return "\n".join(lines)


def _names(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names) - n} more)" if len(names) > n else "")


def _listed(names: list[str]) -> list[str]:
    more = [f"  ... and {len(names) - _SHOWN} more"] if len(names) > _SHOWN else []
    return [f"  {name}" for name in names[:_SHOWN]] + more


def match_state_dict(
    model: nn.Module, state: dict[str, Tensor], source: str = "state dict"
) -> tuple[dict[str, Tensor], LoadReport]:
    """Split ``state`` into what fits ``model`` (same name, same shape) and a report of the rest.

    Returns:
        ``(loadable, report)``: ``loadable`` for ``model.load_state_dict(loadable, strict=False)``.
    """
    own = model.state_dict()
    report = LoadReport(source=source)
    loadable: dict[str, Tensor] = {}
    for name, value in own.items():
        if name not in state:
            report.missing.append(name)
        elif tuple(state[name].shape) != tuple(value.shape):
            report.mismatched[name] = (tuple(state[name].shape), tuple(value.shape))
        else:
            loadable[name] = state[name]
            report.loaded.append(name)
    report.unused = [name for name in state if name not in own]
    return loadable, report


def load_detector_weights(
    detector: nn.Module, checkpoint: str | os.PathLike | dict[str, Any], warn: bool = True
) -> LoadReport:
    """Copy into ``detector`` every tensor of a detkit checkpoint whose name and shape match.

    The checkpoint is migrated to the current format first (:func:`~detkit.checkpoints.migrate_checkpoint`),
    so checkpoints of older detkit versions fit current detectors. A checkpoint written with EMA holds
    the averaged weights in its ``state_dict``: those are the ones loaded. Tensors that are not loaded
    (another number of classes changes the classifier's shape; another head or backbone changes more)
    keep the values ``detector`` was built with. Loading reads the file with ``weights_only=True``.

    Args:
        detector: A built :class:`~detkit.models.Detector` (weights changed in place).
        checkpoint: Path of a checkpoint written by ``detkit fit``, the dict ``torch.load`` gave, or
            ``"torchvision:<model>:<WEIGHTS or path>"``: a torchvision COCO detector's weights, loaded
            strictly into detkit's composition of that model (see
            :func:`~detkit.models.torchvision_import.load_torchvision_weights`; only the classifier
            may differ, for another class list).
        warn: Warn (with the report) when some detector tensor was not loaded.

    Returns:
        The :class:`LoadReport`; ``str(report)`` lists what was not loaded.

    Raises:
        FileNotFoundError: No file at ``checkpoint``.
        ValueError: Not a detkit checkpoint, a format this detkit cannot read, no detector weights,
            or nothing at all that fits ``detector``.
    """
    if isinstance(checkpoint, str) and checkpoint.startswith("torchvision:"):
        return _load_torchvision(detector, checkpoint, warn)
    source = "checkpoint dict" if isinstance(checkpoint, dict) else str(checkpoint)
    checkpoint, state = load_detector_checkpoint(checkpoint)  # errors name the file
    loadable, report = match_state_dict(detector, state, source)
    class_names = checkpoint["detkit"].get("class_names")
    report.class_names = list(class_names) if class_names is not None else None
    if not loadable:
        raise ValueError(f"no tensor of {source} fits the detector (different backbone and head?):\n{report}")
    detector.load_state_dict(loadable, strict=False)
    if warn and not report.complete:
        warnings.warn(str(report), stacklevel=2)
    return report


def _load_torchvision(detector: nn.Module, source: str, warn: bool) -> LoadReport:
    """:func:`load_detector_weights` for a ``"torchvision:<model>:<WEIGHTS or path>"`` source."""
    model, state = read_torchvision_state(source)
    try:
        loaded, reinitialised = load_torchvision_weights(detector, model, state)
    except ValueError as error:
        raise ValueError(f"{source}: {error} (build the detector as detkit.models.torchvision_import.{model} does)") from None
    own = detector.state_dict()
    report = LoadReport(source=source, loaded=loaded)
    report.mismatched = {name: (_torchvision_shape(state, name), tuple(own[name].shape)) for name in reinitialised}
    if warn and reinitialised:
        warnings.warn(f"{report}\n(the classifier starts afresh for this data's classes)", stacklevel=3)
    return report


def _torchvision_shape(state: dict[str, Tensor], name: str) -> tuple[int, ...]:
    """Shape of the torchvision classifier tensor that ``name`` (``head.cls_logits.*``) comes from."""
    suffix = name.rsplit(".", 1)[-1]
    return tuple(state[f"head.classification_head.cls_logits.{suffix}"].shape)
