"""Detections written as JSON lines while ``detkit predict`` runs, and their streaming merge into one file.

Each process appends one line per image to its part, ``predictions.rank<R>.jsonl``, and flushes it
after every batch: nothing per image stays in memory, and a run that is killed leaves every
finished batch readable (:func:`read_predictions`). A line is the record of ``predictions.json``
with the image's dataset index first::

    {"index":7,"file_name":"a.jpg","boxes":[[x1,y1,x2,y2],...],"scores":[...],"labels":[...],"names":[...]}

:func:`merge_parts` then writes one ``predictions.json`` (a list of the records, without
``index``) or ``predictions.jsonl`` (one record a line) in dataset order, each image once, reading
the parts line by line: memory holds the position of each line (three int64 per image), never
the detections.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

__all__ = ["PartWriter", "merge_parts", "part_path", "read_predictions"]

_PREFIX = b'{"index":'


def part_path(folder: str | Path, rank: int) -> Path:
    """The part file of process ``rank`` (its global rank) in ``folder``."""
    return Path(folder) / f"predictions.rank{rank}.jsonl"


class PartWriter:
    """Appends the detections of each image to one part file as a JSON line.

    Numbers are written as ``json.dumps`` writes the same Python floats (the shortest text that reads
    back as the same float64), so the merged file parses to exactly what ``predictions.json`` held
    when it was written at the end.
    """

    def __init__(self, path: str | Path) -> None:
        """Create (or truncate) the part file at ``path``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self.count = 0

    def write(self, index: int, record: dict[str, Any]) -> None:
        """One image: ``index`` is its dataset index, ``record`` its non-empty dict of JSON values."""
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        self._file.write(_PREFIX + b"%d," % index + orjson.dumps(record)[1:] + b"\n")
        self.count += 1

    def flush(self) -> None:
        """Hand what was written to the operating system (it survives the process being killed)."""
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _index_of(line: bytes, source: Path) -> int:
    if not line.startswith(_PREFIX):
        raise ValueError(f"{source}: a line does not start with {_PREFIX.decode()}: {line[:60]!r}")
    return int(line[len(_PREFIX) : line.index(b",", len(_PREFIX))])


def _scan(parts: list[Path]) -> np.ndarray:
    """``int64 [L, 3]``: (index, part, byte offset) of every complete line of ``parts``, sorted by index, then part, then offset."""
    rows = array("q")
    for p, path in enumerate(parts):
        with open(path, "rb") as file:
            offset = 0
            for line in file:
                if line.endswith(b"\n"):  # a last line without its newline was cut by a killed process
                    rows.extend((_index_of(line, path), p, offset))
                offset += len(line)
    table = np.frombuffer(rows, dtype=np.int64).reshape(-1, 3) if rows else np.zeros((0, 3), dtype=np.int64)
    return table[np.lexsort((table[:, 2], table[:, 1], table[:, 0]))]


def merge_parts(parts: list[str | Path], out: str | Path, json_lines: bool = False) -> int:
    """Merge part files (:class:`PartWriter`) into ``out`` in dataset order, each image once; returns the count.

    ``out`` is a JSON list of the records without their ``index`` (``predictions.json``), or with
    ``json_lines`` one record a line. An image found in several parts (a sampler that repeats
    images to even out the shares) is taken from the first part that has it. ``out`` is written
    under a temporary name and renamed at the end, so it is never left half written; the parts are
    left in place (the caller removes them).

    Raises:
        ValueError: A line of a part is not a :class:`PartWriter` line.
    """
    paths = [Path(p) for p in parts]
    table = _scan(paths)
    if len(table):
        table = table[np.r_[True, table[1:, 0] != table[:-1, 0]]]  # first of each index
    out = Path(out)
    temporary = out.with_name(out.name + ".partial")
    files = [open(path, "rb") for path in paths]  # noqa: SIM115 - closed below
    try:
        with open(temporary, "wb") as target:
            target.write(b"" if json_lines else b"[")
            for k, (_, p, offset) in enumerate(table.tolist()):
                source = files[p]
                source.seek(offset)
                line = source.readline()
                body = b"{" + line[line.index(b",", len(_PREFIX)) + 1 :]  # the record without "index"
                if json_lines:
                    target.write(body)
                else:
                    target.write((b"," if k else b"") + body[:-1])
            target.write(b"" if json_lines else b"]")
    finally:
        for file in files:
            file.close()
    os.replace(temporary, out)
    return len(table)


def read_predictions(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a predictions file, one at a time: ``predictions.json`` (read whole),
    ``predictions.jsonl`` or a part file (read line by line; a part's records keep their ``index``,
    and a last line that a killed process left incomplete is skipped).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    if path.suffix == ".json":
        yield from orjson.loads(path.read_bytes())
        return
    with open(path, "rb") as file:
        for line in file:
            if line.endswith(b"\n"):
                yield orjson.loads(line)
