"""Training augmentations from config: presets and YAML lists of albumentations transforms, resolved safely."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Literal, Union

import albumentations as A
from albumentations.core.composition import BaseCompose

__all__ = ["AugmentationSpec", "PRESETS", "build_augmentations", "resolve_transform"]

#: A preset name, or a list of transforms, each ``{"class_path": "albumentations.Rotate", "init_args": {...}}``
#: or ``{"name": "Rotate", <arguments>}``.
AugmentationSpec = Union[Literal["light", "default", "heavy"], list[dict[str, Any]]]

#: Preset names; their flip probability and colour strength come from ``hflip_prob`` / ``color_jitter``.
PRESETS = ("light", "default", "heavy")


def _preset(name: str, hflip_prob: float, color_jitter: float) -> list[dict[str, Any]]:
    flip = [{"name": "HorizontalFlip", "p": hflip_prob}]
    colour = []
    if color_jitter > 0:
        strength = {"brightness": color_jitter, "contrast": color_jitter, "saturation": color_jitter}
        colour = [{"name": "ColorJitter", **strength, "hue": min(0.5, color_jitter / 4), "p": 0.8}]
    if name == "light":
        return flip
    if name == "default":
        return flip + colour
    blurs = [{"name": "Blur", "blur_limit": (3, 5)}, {"name": "MotionBlur"}]
    return (
        flip
        + [{"name": "Affine", "rotate": (-10, 10), "shear": (-5, 5), "translate_percent": (-0.05, 0.05), "p": 0.5}]
        + colour
        + [
            {"name": "OneOf", "p": 0.15, "transforms": blurs},
            {"name": "ToGray", "p": 0.05},
        ]
    )


#: albumentations transforms that resize the whole image: training sizes come from the letterbox
#: (``input_size``, ``scale_range``, ``multiscale_sizes``), so these are refused in augmentation lists.
RESIZING_TRANSFORMS = frozenset(
    {"Resize", "LongestMaxSize", "SmallestMaxSize", "RandomScale", "RandomResizedCrop", "RandomSizedCrop",
     "RandomSizedBBoxSafeCrop"}
)  # fmt: skip


def _transform_class(name: str, where: str) -> type:
    short = name.rsplit(".", 1)[-1]
    if "." in name and not (name.startswith("albumentations.") or name.startswith("A.")):
        raise ValueError(f"{where}: {name!r} is not an albumentations transform (only albumentations.* is allowed)")
    cls = getattr(A, short, None)
    allowed = isinstance(cls, type) and issubclass(cls, (A.BasicTransform, BaseCompose))
    if not allowed or cls in (A.Compose, A.ReplayCompose):
        known = [n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform)]
        close = difflib.get_close_matches(short, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{where}: unknown albumentations transform {name!r}{hint}")
    if short in RESIZING_TRANSFORMS:
        raise ValueError(
            f"{where}: {short} resizes the image, which detkit's letterbox does (data.input_size, "
            "data.scale_range for random scale, data.multiscale_sizes); use a crop such as "
            "BBoxSafeRandomCrop or RandomCrop after it instead"
        )
    return cls


def resolve_transform(entry: dict[str, Any], where: str = "augmentations") -> A.BasicTransform | BaseCompose:
    """Build one albumentations transform from ``{"class_path"/"name": ..., arguments}``.

    Names resolve only inside the ``albumentations`` package. ``OneOf`` / ``SomeOf`` / ``Sequential``
    take ``transforms`` as a list of such entries.

    Raises:
        ValueError: Unknown transform, unknown or missing arguments, or values albumentations rejects;
            the message names the entry (``where``) and the problem.
    """
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a dict with 'name' or 'class_path', got {entry!r}")
    entry = dict(entry)
    if "class_path" in entry:
        name = str(entry.pop("class_path"))
        args = dict(entry.pop("init_args", None) or {})
        if entry:
            raise ValueError(f"{where}: unexpected keys {sorted(entry)} next to class_path/init_args")
    elif "name" in entry:
        name = str(entry.pop("name"))
        args = entry
    else:
        raise ValueError(f"{where}: needs 'name' or 'class_path', got keys {sorted(entry)}")
    where = f"{where} ({name})"
    cls = _transform_class(name, where)
    parameters = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = sorted(set(args) - set(parameters))
        if unknown:
            raise ValueError(f"{where}: unknown arguments {unknown}; {cls.__name__} takes {sorted(parameters)}")
    missing = [n for n, p in parameters.items() if p.default is inspect.Parameter.empty and n not in args
               and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]  # fmt: skip
    if missing:
        raise ValueError(f"{where}: missing required arguments {missing}")
    if issubclass(cls, BaseCompose):
        items = args.get("transforms") or []
        args["transforms"] = [resolve_transform(e, f"{where}.transforms[{k}]") for k, e in enumerate(items)]
    args = {k: tuple(v) if isinstance(v, list) and k != "transforms" else v for k, v in args.items()}
    try:
        return cls(**args)
    except Exception as error:  # noqa: BLE001 - albumentations validates with pydantic, raising many kinds
        raise ValueError(f"{where}: invalid arguments {args}: {error}") from error


def build_augmentations(
    spec: AugmentationSpec = "default", hflip_prob: float = 0.5, color_jitter: float = 0.2
) -> list[A.BasicTransform | BaseCompose]:
    """The transforms of a preset or of a config list.

    Presets: ``light`` flips horizontally (``hflip_prob``); ``default`` also jitters colour
    (``color_jitter``, hue a quarter of it, with probability 0.8); ``heavy`` adds a small random
    affine (rotate +-10 deg, shear +-5 deg, shift +-5 %), occasional blur and grey. A list is used
    as given (``hflip_prob`` / ``color_jitter`` are then ignored).

    Raises:
        ValueError: An unknown preset or a bad entry (see :func:`resolve_transform`).
    """
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"unknown augmentation preset {spec!r}; choose one of {list(PRESETS)} or give a list")
        entries = _preset(spec, hflip_prob, color_jitter)
    else:
        entries = list(spec)
    return [resolve_transform(e, f"augmentations[{k}]") for k, e in enumerate(entries)]
