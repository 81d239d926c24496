"""The one way detkit turns a plain config into objects: jsonargparse's typed parsing, as LightningCLI does."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["instantiate", "resolve"]


def _parse(type_: Any, config: Any) -> tuple[Any, Any]:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--value", type=type_)
    return parser, parser.parse_object({"value": config})


def resolve(type_: Any, config: Any) -> Any:
    """``config`` checked against ``type_`` with every default filled in, as plain json values.

    Args:
        type_: What the config describes, e.g. ``Callable[[int], Detector]`` or a class.
        config: Plain values; a class is given as ``{"class_path": ..., "init_args": {...}}``.
    """
    parser, parsed = _parse(type_, config)
    return json.loads(parser.dump(parsed, format="json", skip_none=False))["value"]


def instantiate(type_: Any, config: Any) -> Any:
    """Build the object ``config`` describes (see :func:`resolve`); errors name the offending key."""
    parser, parsed = _parse(type_, config)
    return parser.instantiate(parsed).value
