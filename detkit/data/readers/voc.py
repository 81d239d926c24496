"""Pascal VOC reader: one xml per image (also the devkit layout), optional split list (txt or csv)."""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from detkit.data.images import IMAGE_EXTENSIONS
from detkit.data.readers.base import DatasetIssues, examples
from detkit.data.readers.records import DetectionRecords, Records, empty_target, sanitize_boxes

__all__ = ["VocReader", "parse_voc_xml", "read_split_file", "voc_class_names"]


def parse_voc_xml(path: Path) -> dict[str, Any]:
    """``{"filename", "size": (h, w) or None, "objects": [{"name", "box": [x1, y1, x2, y2], "difficult"}]}``.

    Raises:
        ValueError: Not well-formed xml, or an object without ``name`` or a numeric ``bndbox``.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"{path} is not valid VOC xml: {error}") from error
    size = None
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width and height and float(width) > 0 and float(height) > 0:
        size = (int(float(height)), int(float(width)))
    objects = []
    for k, obj in enumerate(root.findall("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        try:
            box = [float(obj.findtext(f"bndbox/{key}") or "nan") for key in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as error:
            raise ValueError(f"{path} object {k}: bndbox is not numeric ({error})") from error
        if not name or any(np.isnan(box)):
            raise ValueError(f"{path} object {k}: needs a <name> and <bndbox> with xmin, ymin, xmax, ymax")
        difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "", "false")
        objects.append({"name": name, "box": box, "difficult": difficult})
    return {"filename": (root.findtext("filename") or "").strip(), "size": size, "objects": objects}


def read_split_file(path: str | Path) -> list[str]:
    """Image stems listed in a split file, in order.

    A ``.csv`` with a header must have a ``filename`` column (one row per box, as in the raccoon
    dataset; repeats are merged). Any other file lists one id per line (first whitespace token, as in
    ``ImageSets/Main/*.txt``); an id listed twice is an error.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A csv without ``filename`` column, or a duplicate id in a list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path}")
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "filename" not in (reader.fieldnames or []):
                raise ValueError(f"split csv {path} has no 'filename' column (columns: {reader.fieldnames})")
            return list(dict.fromkeys(Path(row["filename"]).stem for row in reader))
    stems = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    stems = [Path(s).stem if Path(s).suffix.lower() in IMAGE_EXTENSIONS + (".xml",) else s for s in stems]
    duplicates = sorted(s for s, n in Counter(stems).items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate image ids in split file {path}: {examples(duplicates)}")
    return stems


def voc_class_names(annotations_dir: str | Path) -> list[str]:
    """All object names in the xml files of ``annotations_dir``, sorted (a stable label order)."""
    files = sorted(Path(annotations_dir).glob("*.xml"))
    if not files:
        raise ValueError(f"no .xml annotation files in {annotations_dir}")
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
            ValueError: Malformed xml, an unknown class name, a duplicate id, or no images.
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
        unknown = [f"{p.name} object {k} '{o['name']}'" for p, ann in parsed for k, o in enumerate(ann["objects"], 1)
                   if o["name"] not in label_of]  # fmt: skip
        if unknown:
            raise ValueError(f"{len(unknown)} objects of unknown classes (known: {class_names}): {examples(unknown)}")

        records = Records(files=[], sizes=[], targets=[], class_names=list(class_names), issues=issues)
        seen: dict[str, str] = {}
        for path, ann in parsed:
            name = self._image_of(path, ann["filename"])
            if name is None:
                issues.labels_without_images.append(path.name)
                continue
            if name in seen:
                raise ValueError(f"{path} and {seen[name]} annotate the same image {name} (duplicate image ids)")
            seen[name] = path.name
            self._add(records, name, ann["size"], ann["objects"], path.name, label_of)
        if split_file is None:  # images without xml: background
            for p in sorted(self.images_dir.iterdir()):
                if p.suffix.lower() in IMAGE_EXTENSIONS and p.name not in seen:
                    self._add(records, p.name, None, [], p.name, label_of)
        if not records.files:
            raise ValueError(f"no images with annotations in {self.annotations_dir} (images: {self.images_dir})")
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
