"""Pascal VOC reader: one xml per image (also the devkit layout), optional split list (txt or csv)."""

from __future__ import annotations

import csv
import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.images import IMAGE_EXTENSIONS
from detkit.data.readers.base import AnnotationError, AnnotationProblems, DatasetIssues, examples
from detkit.data.readers.records import DetectionRecords, Records, empty_target, sanitize_boxes

__all__ = ["VocReader", "parse_voc_xml", "read_split_file", "voc_class_names"]


def parse_voc_xml(path: Path) -> dict[str, Any]:
    """``{"filename", "size": (h, w) or None, "objects": [{"name", "box": [x1, y1, x2, y2], "difficult"}]}``.

    A missing, empty or non-positive ``<size>`` is ``None`` (the image is measured instead).

    Raises:
        AnnotationError: Not well-formed xml, a ``<size>`` that is not numbers, or objects without a
            ``<name>`` or a ``<bndbox>`` of four finite numbers (each counted, naming the object and tag).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise AnnotationError(f"{path} is not valid VOC xml: {error}") from error
    problems = AnnotationProblems(path)
    size = None
    given = [(root.findtext(f"size/{key}") or "").strip() for key in ("width", "height")]
    if all(given):
        width, height = (_number(text) for text in given)
        if width is None or height is None:
            problems.add("<size> values that are not finite numbers", f"<width>{given[0]:.20}</width> "
                         f"<height>{given[1]:.20}</height>")  # fmt: skip
        elif width > 0 and height > 0:
            size = (int(height), int(width))
    objects = []
    for k, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            problems.add("objects without <name>", f"object {k}")
        texts = {key: (obj.findtext(f"bndbox/{key}") or "").strip() for key in ("xmin", "ymin", "xmax", "ymax")}
        box = [_number(text) for text in texts.values()]
        missing = [f"<{key}>" for key, text in texts.items() if not text]
        bad = [f"<{key}>{text:.20}</{key}>" for (key, text), v in zip(texts.items(), box) if text and v is None]
        if missing:
            problems.add("objects without <bndbox> coordinates", f"object {k} '{name}' ({' '.join(missing)})")
        if bad:
            problems.add("objects with <bndbox> coordinates that are not finite numbers",
                         f"object {k} '{name}' ({' '.join(bad)})")  # fmt: skip
        difficult = (obj.findtext("difficult") or "0").strip().lower() not in ("0", "", "false")
        objects.append({"name": name, "box": box, "difficult": difficult})
    problems.raise_if_any()
    return {"filename": (root.findtext("filename") or "").strip(), "size": size, "objects": objects}


def _number(text: str) -> float | None:
    """``float(text)`` when ``text`` is a finite number, else ``None`` (also for an empty text)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_split_file(path: str | Path) -> list[str]:
    """Image stems listed in a split file, in order.

    A ``.csv`` with a header must have a ``filename`` column (one row per box, as in the raccoon
    dataset; repeats are merged). Any other file lists one id per line (first whitespace token, as in
    ``ImageSets/Main/*.txt``); an id listed twice is an error, and so is a file listing nothing.

    Raises:
        FileNotFoundError: The file does not exist.
        AnnotationError: A csv without ``filename`` column, a duplicate id in a list, or no ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "filename" not in (reader.fieldnames or []):
                raise AnnotationError(f"split csv {path} has no 'filename' column (columns: {reader.fieldnames})")
            stems = list(dict.fromkeys(Path(row["filename"]).stem for row in reader))
    else:
        stems = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        stems = [Path(s).stem if Path(s).suffix.lower() in IMAGE_EXTENSIONS + (".xml",) else s for s in stems]
        duplicates = sorted(s for s, n in Counter(stems).items() if n > 1)
        if duplicates:
            raise AnnotationError(f"duplicate image ids in split file {path}: {examples(duplicates)}")
    if not stems:
        raise AnnotationError(f"split file {path} lists no images")
    return stems


def voc_class_names(annotations_dir: str | Path) -> list[str]:
    """All object names in the xml files of ``annotations_dir``, sorted (a stable label order)."""
    files = sorted(Path(annotations_dir).glob("*.xml"))
    if not files:
        raise AnnotationError(f"no .xml annotation files in {annotations_dir}")
    return _names([parse_voc_xml(f) for f in files])


def _names(parsed: list[dict[str, Any]]) -> list[str]:
    return sorted({obj["name"] for ann in parsed for obj in ann["objects"]})


class VocReader(DetectionRecords):
    """Images with Pascal VOC xml annotations.

    Box coordinates are used as written (``xmin ymin xmax ymax`` as pixel edges, like torchvision's
    ``VOCDetection``). ``difficult`` objects are kept as ignored targets (``iscrowd=1``: neither
    positives nor false positives in COCO evaluation). Boxes reaching outside the image are clipped
    and boxes of zero or negative size dropped, each counted with one warning. An xml whose image is
    missing is reported (``issues.labels_without_images``) and ignored; without a split file, images
    without an xml are background images. See :class:`~detkit.data.readers.records.DetectionRecords`
    for items and ``skip_unreadable``.

    Attributes:
        annotations_dir: Folder of the xml files.
        files: Image paths relative to ``images_dir``; ``image_id`` is the index.
        class_names: Class names in label order.
        issues: What was clipped, dropped, unmatched, ignored or skipped.
    """

    def __init__(
        self,
        images: str | Path,
        annotations: str | Path | None = None,
        split: str | Path | None = None,
        class_names: list[str] | None = None,
        skip_unreadable: bool = False,
    ) -> None:
        """Store the paths (xml files are parsed on first use).

        Args:
            images: Folder of images, or a VOC devkit root (``VOC2012/``) when ``annotations`` is
                ``None``: then images are in ``JPEGImages/``, xml in ``Annotations/``, and ``split``
                may be a set name (``"train"``) of ``ImageSets/Main``.
            annotations: Folder of ``.xml`` files.
            split: Ids of the images to use: a txt list or a csv with a ``filename`` column; ``None``
                uses every xml (and every image).
            class_names: Class names in label order; ``None``: every object name in the xml files of
                ``annotations`` (all of them, not only the split's, so the splits of one folder
                agree), sorted. Objects of other names are an error.
            skip_unreadable: Skip (count and warn about) unreadable images instead of raising.

        Loading raises:
            FileNotFoundError: A folder, the split file or an xml listed in it is missing.
            AnnotationError: Malformed xml (missing tags, coordinates that are not numbers; naming the
                file, the object and the tag), an unknown class name, a duplicate id, a split file
                listing nothing, or no images.

        Loading warns (once, with a count) about files in ``images`` that are not images by their
        suffix (e.g. ``.tif``) and that no xml names, when there is no split file.
        """
        images = Path(images)
        self._devkit = annotations is None
        if self._devkit:
            annotations = images / "Annotations"
            images = images / "JPEGImages"
        super().__init__(images, skip_unreadable)
        self.annotations_dir = Path(annotations)
        self.split = split
        self._class_names_given = list(class_names) if class_names is not None else None

    def __repr__(self) -> str:
        split = f", split='{self.split}'" if self.split is not None else ""
        return f"{type(self).__name__}(annotations='{self.annotations_dir}'{split})"

    def _split_file(self) -> Path | None:
        if self.split is None:
            return None
        if self._devkit and not Path(self.split).is_file():
            return self.images_dir.parent / "ImageSets" / "Main" / f"{self.split}.txt"
        return Path(self.split)

    def _parse(self) -> Records:
        for folder in (self.images_dir, self.annotations_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"VOC folder not found: {folder}")
        issues = DatasetIssues(source=str(self.annotations_dir))
        split_file = self._split_file()
        if split_file is not None:
            xml_files = [self.annotations_dir / f"{stem}.xml" for stem in read_split_file(split_file)]
            missing = [str(p) for p in xml_files if not p.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} xml files listed in {split_file} do not exist: {examples(missing)}"
                )
        else:
            xml_files = sorted(self.annotations_dir.glob("*.xml"))
        parsed = [(p, parse_voc_xml(p)) for p in xml_files]
        class_names = self._class_names_given
        if class_names is None:
            class_names = _names([a for _, a in parsed]) if split_file is None else voc_class_names(self.annotations_dir)
        label_of = {name: k for k, name in enumerate(class_names)}
        problems = AnnotationProblems(self.annotations_dir)
        for path, ann in parsed:
            for k, obj in enumerate(ann["objects"], start=1):
                if obj["name"] not in label_of:
                    where = f"{path.name} object {k} '{obj['name']}'"
                    problems.add(f"objects of unknown classes (known: {class_names})", where)
        problems.raise_if_any()

        records = Records(files=[], sizes=[], targets=[], class_names=list(class_names), issues=issues)
        seen: dict[str, str] = {}
        for path, ann in parsed:
            name = self._image_of(path, ann["filename"])
            if name is None:
                issues.labels_without_images.append(path.name)
                continue
            if name in seen:
                raise AnnotationError(f"{path} and {seen[name]} annotate the same image {name} (duplicate image ids)")
            seen[name] = path.name
            self._add(records, name, ann["size"], ann["objects"], path.name, label_of)
        if split_file is None:  # images without xml: background
            for name in self._list_images(issues, used=set(seen), required=False, stacklevel=6):
                if name not in seen:
                    self._add(records, name, None, [], name, label_of)
        if not records.files:
            unmatched, unreadable = len(issues.labels_without_images), len(issues.unreadable)
            raise AnnotationError(
                f"no images with annotations in {self.annotations_dir} (images: {self.images_dir}; {len(parsed)} "
                f"xml files, {unmatched} without their image, {unreadable} images unreadable)"
            )
        issues.warn(stacklevel=6)
        self._warn_unreadable(issues, stacklevel=6)
        return records

    def _image_of(self, xml: Path, filename: str) -> str | None:
        """The image file (relative to ``images_dir``) an xml annotates: its ``<filename>``, else its stem."""
        candidates = [filename] if filename else []
        candidates += [xml.stem + ext for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS)]
        return next((c for c in candidates if (self.images_dir / c).is_file()), None)

    def _add(
        self,
        records: Records,
        name: str,
        size: tuple[int, int] | None,
        objects: list[dict[str, Any]],
        where: str,
        label_of: dict[str, int],
    ) -> None:
        issues = records.issues
        if size is None:
            size = self._probe_size(name, issues)
            if size is None:  # unreadable, skipped
                return
        if not objects:
            issues.background_images.append(name)
            target = empty_target()
        else:
            boxes = np.asarray([o["box"] for o in objects], dtype=np.float64)
            names = [f"{where} object {k}" for k in range(1, len(objects) + 1)]
            keep = sanitize_boxes(boxes, size[1], size[0], names, issues)
            difficult = np.asarray([o["difficult"] for o in objects], dtype=np.int64)
            issues.ignored += [n for n, d, k in zip(names, difficult, keep) if d and k]
            boxes = boxes[keep]
            target = {
                "boxes": boxes.astype(np.float32),
                "labels": np.asarray([label_of[o["name"]] for o in objects], dtype=np.int64)[keep],
                "iscrowd": difficult[keep],
                "area": ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.float32),
            }
        records.files.append(name)
        records.sizes.append(size)
        records.targets.append(target)
