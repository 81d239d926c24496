"""What every file-backed reader guarantees: never an empty dataset; malformed entries counted in one error."""

from __future__ import annotations

from pathlib import Path

import pytest

from detkit.data.readers import AnnotationError, DatasetIssues, DetectionRecords, Records
from detkit.data.readers.base import AnnotationProblems


class _Empty(DetectionRecords):
    """A format whose parser finds nothing (and says nothing about it)."""

    def __repr__(self) -> str:
        return f"_Empty('{self.images_dir}')"

    def _parse(self) -> Records:
        return Records(files=[], sizes=[], targets=[], class_names=["a"], issues=DatasetIssues())


def test_a_reader_of_no_images_is_an_error_naming_it(tmp_path: Path) -> None:
    reader = _Empty(tmp_path / "pics")
    with pytest.raises(AnnotationError, match=r"no images in _Empty\('.*pics'\) \(images folder .*pics\)"):
        len(reader)
    with pytest.raises(ValueError):  # an AnnotationError is a ValueError; nothing was cached
        reader.class_names


def test_problems_are_counted_per_kind_naming_a_few() -> None:
    problems = AnnotationProblems("x.json")
    assert not problems
    problems.raise_if_any()  # nothing: no error
    for k in range(5):
        problems.add("annotations without 'bbox'", f"annotation {k}")
    problems.add("images without 'id'", "images[2]")
    expected = "5 annotations without 'bbox' in x.json: annotation 0, annotation 1, annotation 2 (and 2 more); 1 images without 'id': images[2]"
    with pytest.raises(AnnotationError) as error:
        problems.raise_if_any()
    assert str(error.value) == expected
