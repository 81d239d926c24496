"""What every reader shares: lazy loading, typed keyword construction, the Reader interface."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from detkit.data import CocoReader, FolderReader, Reader, ShapesReader, VocReader, YoloReader

READERS = (CocoReader, FolderReader, ShapesReader, VocReader, YoloReader)


def test_construction_reads_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    readers = [
        CocoReader(missing / "images", missing / "a.json"),
        FolderReader(missing),
        VocReader(missing / "images", missing / "xml", missing / "split.csv"),
        VocReader(missing / "VOC2012", split="train"),  # devkit layout: the split file is resolved on loading
        YoloReader(missing / "images", class_names=missing / "data.yaml"),
    ]
    for reader in readers:
        assert isinstance(reader, Reader) and str(missing) in repr(reader)
        with pytest.raises(FileNotFoundError, match="missing"):
            reader.load()
        with pytest.raises(FileNotFoundError):  # not cached: the same error again
            len(reader)


@pytest.mark.parametrize("cls", READERS)
def test_typed_documented_keyword_init(cls: type) -> None:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert parameters and all(p.annotation is not inspect.Parameter.empty for p in parameters)
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters)
    doc = inspect.getdoc(cls.__init__) or ""
    assert all(f"{p.name}:" in doc for p in parameters), cls.__name__


def test_shapes_reader_interface() -> None:
    reader = ShapesReader(3, seed=1)
    assert reader.load() is reader and len(reader) == 3 and reader.num_classes == 3 and reader.category_ids is None
    assert reader.target(2)["file_name"] == "shapes_1_000002.png" and reader.issues.source == repr(reader)
