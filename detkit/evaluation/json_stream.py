"""A json file holding one top-level array, read a block of elements at a time (a COCO results file of any size)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # as detkit.evaluation.cocojson: orjson where installed
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    import json

    _loads = json.loads

__all__ = ["NotAnArray", "iter_array"]

BLOCK_BYTES = 2**23  # read (and parsed) at a time: about 80k COCO detections
_NEXT = re.compile(rb"\s*,\s*")  # between two elements


class NotAnArray(ValueError):
    """The file's json does not start with ``[``."""


def _last_cut(buf: bytes) -> tuple[int, int] | None:
    """``(end, next)`` around the last ``}`` + ``,`` of ``buf``: where an object element may end and the next start."""
    pos = len(buf)
    while (pos := buf.rfind(b"}", 0, pos)) >= 0:
        gap = _NEXT.match(buf, pos + 1)
        if gap is not None and gap.end() < len(buf):
            return pos + 1, gap.end()
    return None


def iter_array(path: str | Path, block_bytes: int | None = None) -> Iterator[list[Any]]:
    """The elements of the top-level json array in ``path``, a list of about ``block_bytes`` (default
    :data:`BLOCK_BYTES`) of them at a time.

    The file is read a block at a time and cut after the last ``}`` that a ``,`` follows; the text
    from the start of an element to such a cut parses as an array exactly when the cut ends an
    element, so a cut inside a string or a nested object fails to parse and the next block is read
    first. Memory holds a block or two of text and one block's elements, whatever the file's size
    (an array whose elements are not objects is read whole).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        NotAnArray: The json does not start with ``[``.
        ValueError: The file is not valid json (naming it).
    """
    path, block_bytes = Path(path), block_bytes or BLOCK_BYTES
    if not path.is_file():
        raise FileNotFoundError(f"json file not found: {path}")
    with open(path, "rb") as file:
        buf = b""
        while not buf and (more := file.read(block_bytes)):  # past any leading whitespace
            buf = more.lstrip()
        if not buf.startswith(b"["):
            raise NotAnArray(f"{path} does not hold a json array")
        buf, eof = buf[1:], False
        while True:
            if not eof and len(buf) < block_bytes:
                more = file.read(block_bytes)
                eof, buf = not more, buf + more
                if not eof:
                    continue
            cut = None if eof else _last_cut(buf)
            if cut is None:  # the end of the file: the rest closes the array
                if not eof:
                    more = file.read(block_bytes)
                    eof, buf = not more, buf + more
                    continue
                yield _parse(b"[" + buf, path)
                return
            try:
                elements = _loads(b"[" + buf[: cut[0]] + b"]")
            except ValueError:  # cut inside a string or a nested object (or invalid json): read on
                more = file.read(block_bytes)
                eof, buf = not more, buf + more
                continue
            buf = buf[cut[1] :]
            yield elements


def _parse(text: bytes, path: Path) -> list[Any]:
    try:
        return _loads(text)
    except ValueError as error:  # json.JSONDecodeError and orjson.JSONDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid json: {error}") from error
