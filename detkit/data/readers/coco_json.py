"""The COCO instances json as columns: entry rules, column-by-column checks and the chunked read of ``annotations``.

A json the size of COCO train2017 (118k images, 860k boxes) is read with orjson, its
``annotations`` list a few hundred entries at a time (:func:`read_coco_json`), and checked column
by column: each field becomes one numpy array, checked with array operations. When a column shows
a malformed entry, the whole json is parsed and the entry-by-entry check (``_RULES``,
:func:`checked_entries`) names every bad entry. :class:`~detkit.data.readers.coco.CocoReader`
builds its records from these columns.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from itertools import chain
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson

from detkit.data.readers.base import AnnotationError, AnnotationProblems

__all__ = ["annotation_columns", "check_unique_ids", "checked_entries", "column_table", "load_json", "read_coco_json"]


def load_json(ann_file: Path, raw: bytes | None = None) -> Any:
    """The parsed json (``raw``: its bytes, if already read).

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        AnnotationError: ``ann_file`` is not valid json.
    """
    if raw is None:
        if not ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
        raw = ann_file.read_bytes()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass  # NaN, Infinity, a byte-order mark: the standard library reads them (the entry check then names them)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationError(f"{ann_file} is not valid json: {error}") from error


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# What each entry of a COCO json must hold: field -> (required, check, what the check expects).
_Rule = tuple[bool, Callable[[Any], bool], str]
_RULES: dict[str, dict[str, _Rule]] = {
    "categories": {
        "id": (True, _is_int, "an integer"),
        "name": (True, lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
    },
    "images": {
        "id": (True, _is_int, "an integer"),
        "file_name": (True, lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty string"),
        "width": (True, lambda v: _is_number(v) and v > 0, "a positive number"),
        "height": (True, lambda v: _is_number(v) and v > 0, "a positive number"),
    },
    "annotations": {
        "id": (False, _is_int, "an integer"),
        "image_id": (True, _is_int, "an integer"),
        "category_id": (True, _is_int, "an integer"),
        "bbox": (
            True,
            lambda v: isinstance(v, list) and len(v) == 4 and all(_is_number(x) for x in v),
            "4 finite numbers [x, y, width, height]",
        ),
        "area": (False, lambda v: v is None or (_is_number(v) and v >= 0), "a number >= 0"),
        "iscrowd": (False, lambda v: _is_number(v) and v in (0, 1), "0 or 1"),
    },
}
_SINGULAR = {"categories": "category", "images": "image", "annotations": "annotation"}


def checked_entries(
    data: dict[str, Any], key: str, ann_file: Path, problems: AnnotationProblems
) -> list[tuple[str, dict[str, Any]]]:
    """The well-formed entries of ``data[key]``, each with its name (``"image 7"``; ``"images[3]"`` without id).

    Each malformed entry is added to ``problems``, named with the field at fault; duplicate ids
    raise at once (they make every later lookup ambiguous). A missing or ``null`` list is empty.

    Raises:
        AnnotationError: ``data[key]`` is not a list, or two entries share an id.
    """
    entries = data.get(key)
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise AnnotationError(f"{ann_file}: '{key}' must be a list, got {type(entries).__name__}")
    kind, valid = _SINGULAR[key], []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add(f"{key} entries that are not objects", f"{key}[{k}] = {entry!r:.40}")
            continue
        name = f"{kind} {entry['id']}" if _is_int(entry.get("id")) else f"{key}[{k}]"  # without id: its position
        ok = True
        for field, (required, check, expected) in _RULES[key].items():
            if field not in entry:
                if required:
                    problems.add(f"{key} without '{field}'", name)
                    ok = False
            elif not check(entry[field]):
                problems.add(f"{key} whose '{field}' is not {expected}", f"{name} ({field}: {entry[field]!r:.40})")
                ok = False
        if ok:
            valid.append((name, entry))
    duplicates = sorted(i for i, n in Counter(e["id"] for _, e in valid if "id" in e).items() if n > 1)
    if duplicates:
        raise AnnotationError(f"duplicate {kind} ids {duplicates[:10]} in {ann_file}")
    return valid



# ---- Columns: the vectorised twin of ``_RULES`` for the two long lists ----------------------------

_MISSING = object()  # an optional field that an entry leaves out


def _types(values: Any) -> set[type]:
    return set(map(type, values))


def _field(entries: list[Any], field: str, default: Any = None, required: bool = True) -> list[Any]:
    """``entry[field]`` of every entry (``default`` where an optional field is left out).

    Raises:
        KeyError: A required field is missing.
    """
    get = itemgetter(field) if required else methodcaller("get", field, default)
    return list(map(get, entries))


def _ints(values: list[Any]) -> np.ndarray:
    """int64 ``[N]`` of ``values``; ``ValueError`` unless each is an int (not a bool), ``OverflowError`` beyond 64 bits."""
    if not _types(values) <= {int}:
        raise ValueError("not all integers")
    return np.fromiter(values, np.int64, len(values))  # OverflowError beyond 64 bits


def _numbers(values: list[Any]) -> np.ndarray:
    """float64 ``[N]`` of ``values``; ``ValueError`` unless each is a finite int or float (not a bool)."""
    if not _types(values) <= {int, float}:
        raise ValueError("not all numbers")
    array = np.fromiter(values, np.float64, len(values))
    if not np.isfinite(array).all():
        raise ValueError("not all finite")
    return array


def _optional_ids(entries: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``id`` int64 ``[N]`` (0 where left out) and whether each entry has one, bool ``[N]``."""
    values = _field(entries, "id", _MISSING, required=False)
    if object not in _types(values):
        return _ints(values), np.ones(len(values), dtype=bool)
    has_id = np.fromiter((v is not _MISSING for v in values), bool, len(values))
    return _ints([0 if v is _MISSING else v for v in values]), has_id


def _image_columns(entries: list[Any]) -> dict[str, Any]:
    """The columns of well-formed ``images`` entries (``_RULES["images"]``).

    Raises:
        ValueError, KeyError, TypeError, OverflowError: An entry is malformed (or an id needs more than 64 bits).
    """
    if not _types(entries) <= {dict}:
        raise TypeError("not all objects")
    ids = _field(entries, "id")
    files = _field(entries, "file_name")
    if not _types(files) <= {str} or not all(map(str.strip, files)):
        raise ValueError("file names must be non-empty strings")
    widths, heights = _field(entries, "width"), _field(entries, "height")
    width, height = _numbers(widths), _numbers(heights)
    if not ((width > 0).all() and (height > 0).all()):
        raise ValueError("sizes must be positive")
    return {"ids": ids, "id": _ints(ids), "files": files, "widths": widths, "heights": heights,
            "width": width, "height": height}  # fmt: skip


def annotation_columns(entries: list[Any]) -> dict[str, np.ndarray]:
    """The columns of well-formed ``annotations`` entries (``_RULES["annotations"]``); ``bbox`` is float64 ``[N, 4]``.

    A left-out ``area`` (or ``null``) reads as 0, which the reader then replaces by the box area.

    Raises:
        ValueError, KeyError, TypeError, OverflowError: An entry is malformed (or an id needs more than 64 bits).
    """
    if not _types(entries) <= {dict}:
        raise TypeError("not all objects")
    n = len(entries)
    ann_id, has_id = _optional_ids(entries)
    image_id = _ints(_field(entries, "image_id"))
    category_id = _ints(_field(entries, "category_id"))
    boxes = _field(entries, "bbox")
    if not (_types(boxes) <= {list} and set(map(len, boxes)) <= {4}):
        raise ValueError("boxes must be lists of 4")
    if not _types(chain.from_iterable(boxes)) <= {int, float}:
        raise ValueError("box values must be numbers")
    bbox = np.fromiter(chain.from_iterable(boxes), np.float64, 4 * n).reshape(n, 4)
    del boxes
    if not np.isfinite(bbox).all():
        raise ValueError("box values must be finite")
    areas = _field(entries, "area", None, required=False)
    if type(None) in _types(areas):
        areas = [0 if v is None else v for v in areas]
    area = _numbers(areas)
    iscrowd = _numbers(_field(entries, "iscrowd", 0, required=False))
    if not ((area >= 0).all() and ((iscrowd == 0) | (iscrowd == 1)).all()):
        raise ValueError("area must be >= 0 and iscrowd 0 or 1")
    return {"id": ann_id, "has_id": has_id, "image_id": image_id, "category_id": category_id, "bbox": bbox,
            "area": area, "iscrowd": iscrowd.astype(np.int64)}  # fmt: skip


_COLUMNS: dict[str, Callable[[list[Any]], dict[str, Any]]] = {"images": _image_columns, "annotations": annotation_columns}


def column_table(data: dict[str, Any], key: str, ann_file: Path, problems: AnnotationProblems) -> dict[str, Any] | None:
    """The columns of ``data[key]`` (``"images"`` or ``"annotations"``), or ``None`` when an entry is malformed.

    A malformed entry is found column by column; :func:`checked_entries` then names each one in
    ``problems`` as the entry-by-entry check always has. A missing or ``null`` list is empty.

    Raises:
        AnnotationError: ``data[key]`` is not a list, or two entries share an id.
    """
    entries = data.get(key)
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise AnnotationError(f"{ann_file}: '{key}' must be a list, got {type(entries).__name__}")
    try:
        columns = _COLUMNS[key](entries)
    except (ValueError, KeyError, TypeError, OverflowError):
        found = sum(map(len, problems.found.values()))
        checked_entries(data, key, ann_file, problems)  # names each malformed entry; raises on duplicate ids
        if sum(map(len, problems.found.values())) == found:  # well-formed by the rules, but beyond 64 bits
            _add_beyond_64_bits(entries, key, problems)
        return None
    check_unique_ids(columns, key, ann_file)
    return columns


def check_unique_ids(columns: dict[str, Any], key: str, ann_file: Path) -> None:
    """Raise ``AnnotationError`` naming up to 10 ids that two entries of ``key`` share."""
    ids = np.sort(columns["id"] if key == "images" else columns["id"][columns["has_id"]])
    duplicates = np.unique(ids[1:][ids[1:] == ids[:-1]]).tolist()
    if duplicates:
        raise AnnotationError(f"duplicate {_SINGULAR[key]} ids {duplicates[:10]} in {ann_file}")


def _add_beyond_64_bits(entries: list[dict[str, Any]], key: str, problems: AnnotationProblems) -> None:
    """Add the integer fields that do not fit in int64 (ids of 2**63 and more) to ``problems``."""
    found = 0
    for k, entry in enumerate(entries):
        name = f"{_SINGULAR[key]} {entry['id']}" if _is_int(entry.get("id")) else f"{key}[{k}]"
        for field, (_, _, expected) in _RULES[key].items():
            value = entry.get(field)
            if expected == "an integer" and _is_int(value) and not -(2**63) <= value < 2**63:
                problems.add(f"{key} whose '{field}' does not fit in 64 bits", f"{name} ({field}: {value})")
                found += 1
    if not found:  # not expected: the columns accept what the rules accept, within 64 bits
        problems.add(f"{key} that could not be read into arrays", key)


# ---- Reading the annotations list a chunk at a time -----------------------------------------------

_CHUNK_BYTES = 2**15  # parsed at a time: ~250 annotations, freed (as columns) before the garbage collector promotes them
_RETRIES = 8  # cuts of one chunk that may fail (inside a string or a nested object) before the whole file is parsed
_ANNOTATIONS_KEY = re.compile(rb'"annotations"\s*:\s*(\[)\s*')
_END = re.compile(rb"\}\s*\]")  # an object closing an array: maybe the last annotation
_CUT = re.compile(rb"\}\s*(?:,\s*(?=\{)|\])")  # an object followed by the next object or the array's end
_MARKER = "detkit: annotations read in chunks (8c1d7e)"  # stands in for them in the rest of the json


def read_coco_json(ann_file: Path) -> tuple[Any, dict[str, np.ndarray] | None]:
    """The parsed json, and the columns of its annotations where they could be read a chunk at a time.

    With columns, the json's ``annotations`` list was read in chunks (never all at once as Python
    objects: about 600 bytes each, and the garbage collector's passes over them take longer than
    the parse) and the returned json holds a marker in its place. Without (``None``), the json is
    parsed whole: when no top-level ``"annotations": [`` is found, a chunk does not parse (NaN,
    Infinity, invalid json) or an annotation is malformed (the entry-by-entry check then names it).

    Raises:
        FileNotFoundError: ``ann_file`` does not exist.
        AnnotationError: ``ann_file`` is not valid json.
    """
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
    raw = ann_file.read_bytes()
    found = _annotations_in_chunks(raw)
    if found is not None:
        (rest, columns), found = found, None
        try:
            data = orjson.loads(rest)
        except orjson.JSONDecodeError:  # NaN, Infinity, ... outside the annotations
            data = None
        del rest
        if isinstance(data, dict) and data.get("annotations") == _MARKER:  # the key found was the top-level one
            return data, columns
        del data, columns  # before the whole json is parsed
    return load_json(ann_file, raw), None


def _annotations_in_chunks(raw: bytes) -> tuple[bytes, dict[str, np.ndarray]] | None:
    """The columns of the first ``"annotations": [...]`` array of ``raw``, and ``raw`` with ``_MARKER`` in its place.

    The array is cut after a ``}`` that ``,{`` or ``]`` follows, about every ``_CHUNK_BYTES``, and
    each ``[`` + piece + ``]`` is parsed by orjson. A piece starting at an element's start parses
    exactly as within the file, so it parses as a whole only if it ends where an element ends: a
    cut inside a string or a nested object leaves something open, fails, and the next cut is
    tried. ``None`` when there is no such array, a piece fails ``_RETRIES`` times, or an
    annotation is malformed.
    """
    key = _ANNOTATIONS_KEY.search(raw)
    if key is None:
        return None
    start, pos, pieces = key.start(1), key.end(), []
    end = pos + 1 if raw[pos : pos + 1] == b"]" else None  # an empty array
    while end is None:
        target = pos + _CHUNK_BYTES
        ends = (m for m in _END.finditer(raw, pos, target + 1024) if m.start() < target)  # it may end first (1 KB: "}  ]")
        for failures, cut in enumerate(chain(ends, _CUT.finditer(raw, target))):
            if failures > _RETRIES:
                return None
            try:
                entries = orjson.loads(b"[" + raw[pos : cut.start() + 1] + b"]")
            except orjson.JSONDecodeError:
                continue  # a cut inside a string or a nested object
            try:
                pieces.append(annotation_columns(entries))
            except (ValueError, KeyError, TypeError, OverflowError):
                return None
            pos, end = cut.end(), cut.end() if cut.group().endswith(b"]") else None
            break
        else:
            return None  # no cut left: the array does not close
    columns = {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]} if pieces else annotation_columns([])
    return raw[:start] + orjson.dumps(_MARKER) + raw[end:], columns
