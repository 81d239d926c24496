"""COCO ground-truth and results json <-> flat numpy arrays (numpy only, orjson when installed)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detkit.evaluation.json_stream import NotAnArray, iter_array
from detkit.ops.xywh import xyxy_to_xywh

try:  # orjson parses COCO results files several times faster than the standard library
    import orjson

    def _loads(data: bytes) -> Any:
        return orjson.loads(data)

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - exercised only where orjson is absent

    def _loads(data: bytes) -> Any:
        return json.loads(data)

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj).encode()


__all__ = [
    "GroundTruth",
    "Results",
    "read_json",
    "write_json",
    "load_ground_truth",
    "load_results",
    "targets_to_coco",
    "detections_to_coco",
    "ground_truth_to_coco",
    "results_to_coco",
]


def read_json(path: str | Path) -> Any:
    """Parse a json file, raising ``FileNotFoundError`` / ``ValueError`` that name it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"json file not found: {path}")
    data = path.read_bytes()
    try:
        return _loads(data)
    except ValueError as error:  # json.JSONDecodeError and orjson.JSONDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid json: {error}") from error


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` (dicts, lists, numbers, numpy arrays) as json; floats round-trip exactly."""
    Path(path).write_bytes(_dumps(obj))


@dataclass
class GroundTruth:
    """A COCO instances json as arrays; annotations keep their file order.

    Attributes:
        image_ids: ``int64[I]`` image ids, sorted ascending (pycocotools' image order).
        category_ids: ``int64[K]`` category ids, sorted ascending.
        category_names: ``K`` names, in ``category_ids`` order.
        image: ``int64[G]`` index into ``image_ids`` of each annotation.
        category: ``int64[G]`` index into ``category_ids`` of each annotation.
        boxes: ``float64[G, 4]`` COCO ``[x, y, w, h]`` boxes.
        area: ``float64[G]`` the annotations' own ``area`` (box area where absent).
        iscrowd: ``bool[G]`` crowd flags.
    """

    image_ids: np.ndarray
    category_ids: np.ndarray
    category_names: list[str]
    image: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    area: np.ndarray
    iscrowd: np.ndarray


@dataclass
class Results:
    """COCO detection results as arrays, in file order (only categories of the ground truth).

    Attributes:
        image: ``int64[D]`` index into the ground truth's ``image_ids``.
        category: ``int64[D]`` index into the ground truth's ``category_ids``.
        boxes: ``float64[D, 4]`` ``[x, y, w, h]``.
        scores: ``float64[D]``.
    """

    image: np.ndarray
    category: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray


def _column(items: list[dict], key: str, dtype: type, source: str) -> np.ndarray:
    try:
        return np.fromiter(map(itemgetter(key), items), dtype=dtype, count=len(items))
    except KeyError:
        raise ValueError(f"{source}: an entry has no {key!r}") from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: bad {key!r} value ({error})") from None


def _boxes(items: list[dict], source: str) -> np.ndarray:
    try:
        flat = np.fromiter((v for box in map(itemgetter("bbox"), items) for v in box), np.float64)
    except KeyError:
        raise ValueError(f"{source}: an entry has no 'bbox'") from None
    if flat.size != 4 * len(items):
        raise ValueError(f"{source}: every 'bbox' must be [x, y, width, height]")
    return flat.reshape(-1, 4)


def _index(ids: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in the sorted ``known`` and whether each was found."""
    pos = np.searchsorted(known, ids).clip(max=max(len(known) - 1, 0))
    found = known[pos] == ids if len(known) else np.zeros(len(ids), dtype=bool)
    return pos, found


def load_ground_truth(gt: str | Path | dict, source: str | None = None) -> GroundTruth:
    """Read a COCO instances json (a path or the parsed dict) into :class:`GroundTruth`.

    As pycocotools: annotations of images or categories the file does not list are not evaluated,
    and ``iscrowd`` marks ignored ground truth.
    """
    source = source or (str(gt) if not isinstance(gt, dict) else "ground truth")
    data = gt if isinstance(gt, dict) else read_json(gt)
    if not isinstance(data, dict) or "images" not in data or "categories" not in data:
        raise ValueError(f"{source} is not a COCO instances json (needs 'images' and 'categories')")
    image_ids = np.unique(_column(data["images"], "id", np.int64, f"{source} images"))
    categories = sorted(data["categories"], key=itemgetter("id"))
    category_ids = np.asarray([c["id"] for c in categories], dtype=np.int64)
    if len(np.unique(category_ids)) != len(category_ids):
        raise ValueError(f"{source} has duplicate category ids")
    anns = data.get("annotations") or []
    name = f"{source} annotations"
    image, image_ok = _index(_column(anns, "image_id", np.int64, name), image_ids)
    category, category_ok = _index(_column(anns, "category_id", np.int64, name), category_ids)
    boxes = _boxes(anns, name)
    area = np.fromiter((a.get("area", b[2] * b[3]) for a, b in zip(anns, boxes)), np.float64, len(anns))
    iscrowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), bool, len(anns))
    keep = np.flatnonzero(image_ok & category_ok)
    return GroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        category_names=[str(c.get("name", c["id"])) for c in categories],
        image=image[keep],
        category=category[keep],
        boxes=boxes[keep],
        area=area[keep],
        iscrowd=iscrowd[keep],
    )


def load_results(results: str | Path | list, gt: GroundTruth, source: str | None = None) -> Results:
    """Read a COCO results json (a path or the parsed list) for :func:`load_ground_truth`'s ``gt``.

    A file is read a block of detections at a time (:func:`~detkit.evaluation.json_stream.iter_array`):
    memory holds the arrays (56 bytes a detection) and one block's json objects, never the whole list.

    Raises:
        ValueError: A detection names an image the ground truth does not have (pycocotools refuses
            such files too) or the file is not a list of ``{image_id, category_id, bbox, score}``.
    """
    source = source or (str(results) if not isinstance(results, list) else "results")
    blocks: Any = [results] if isinstance(results, list) else iter_array(results)
    columns: dict[str, list[np.ndarray]] = {"image": [], "category": [], "boxes": [], "scores": []}
    try:
        for dets in blocks:
            for name, column in _result_columns(dets, gt, source).items():
                columns[name].append(column)
    except NotAnArray:
        dets = read_json(results)  # names the file when it is not json at all
        if not isinstance(dets, list):
            raise ValueError(f"{source} is not a COCO results json (a list of detections)") from None
        for name, column in _result_columns(dets, gt, source).items():  # a list after a byte-order mark, say
            columns[name].append(column)
    empty = {"image": np.zeros(0, np.int64), "category": np.zeros(0, np.int64),
             "boxes": np.zeros((0, 4)), "scores": np.zeros(0)}  # fmt: skip
    arrays = {}
    for name in list(columns):  # one column at a time: the pieces of one are freed before the next is joined
        pieces = columns.pop(name)
        arrays[name] = np.concatenate(pieces) if pieces else empty[name]
        del pieces
    return Results(**arrays)


def _result_columns(dets: list, gt: GroundTruth, source: str) -> dict[str, np.ndarray]:
    """The arrays of one block of detections, those of categories the ground truth has."""
    image, image_ok = _index(_column(dets, "image_id", np.int64, source), gt.image_ids)
    if not image_ok.all():
        bad = dets[int(np.flatnonzero(~image_ok)[0])]["image_id"]
        raise ValueError(f"{source}: detection for image_id {bad}, which is not in the ground truth")
    category, category_ok = _index(_column(dets, "category_id", np.int64, source), gt.category_ids)
    scores = _column(dets, "score", np.float64, source)
    boxes = _boxes(dets, source)
    if category_ok.all():
        return {"image": image, "category": category, "boxes": boxes, "scores": scores}
    keep = np.flatnonzero(category_ok)  # pycocotools never evaluates unknown categories
    return {"image": image[keep], "category": category[keep], "boxes": boxes[keep], "scores": scores[keep]}


def _coco_bbox(boxes: Any) -> list[list[float]]:
    """``[N, 4]`` xyxy boxes (array, tensor or nested lists) -> COCO ``bbox`` lists of float64 numbers."""
    return xyxy_to_xywh(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).tolist()


def targets_to_coco(
    targets: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    category_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Targets (xyxy boxes in original pixels, contiguous labels) -> a COCO instances json dict.

    Args:
        targets: one dict per image with ``image_id``, ``boxes`` ``[N, 4]``, ``labels`` ``[N]`` and
            optionally ``iscrowd``, ``area`` (numpy arrays or CPU tensors); ``orig_size`` (h, w)
            becomes the image's height and width when present.
        class_names: one name per label.
        category_ids: COCO category id of each label; default ``label + 1``.
    """
    ids = list(category_ids) if category_ids is not None else list(range(1, len(class_names) + 1))
    if len(ids) != len(class_names):
        raise ValueError(f"{len(class_names)} class names but {len(ids)} category ids")
    images, annotations = [], []
    for t in targets:
        image = {"id": int(t["image_id"])}
        if t.get("orig_size") is not None:
            image["height"], image["width"] = (int(v) for v in np.asarray(t["orig_size"]))
        images.append(image)
        boxes = _coco_bbox(t["boxes"])
        labels = np.asarray(t["labels"]).reshape(-1).tolist()
        crowd = np.asarray(t["iscrowd"]).reshape(-1).tolist() if t.get("iscrowd") is not None else [0] * len(labels)
        if t.get("area") is not None:
            area = np.asarray(t["area"], dtype=np.float64).reshape(-1).tolist()
        else:
            area = [w * h for _, _, w, h in boxes]
        for box, label, c, a in zip(boxes, labels, crowd, area):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image["id"], "category_id": ids[label],
                 "bbox": box, "area": a, "iscrowd": int(c)}
            )  # fmt: skip
    categories = [{"id": int(i), "name": str(n)} for i, n in zip(ids, class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def detections_to_coco(
    detections: Sequence[dict[str, Any]],
    image_ids: Sequence[int],
    category_ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Detections (xyxy boxes in original pixels, contiguous labels) -> a COCO results list.

    Args:
        detections: one dict per image with ``boxes`` ``[D, 4]``, ``scores`` ``[D]``, ``labels`` ``[D]``.
        image_ids: the COCO image id of each entry of ``detections``.
        category_ids: COCO category id of each label; default ``label + 1``.
    """
    if len(detections) != len(image_ids):
        raise ValueError(f"{len(detections)} detection entries but {len(image_ids)} image ids")
    out = []
    for det, image_id in zip(detections, image_ids):
        labels = np.asarray(det["labels"]).reshape(-1)
        cats = (np.asarray(category_ids)[labels] if category_ids is not None else labels + 1).tolist()
        scores = np.asarray(det["scores"], dtype=np.float64).reshape(-1).tolist()
        for box, cat, score in zip(_coco_bbox(det["boxes"]), cats, scores):
            out.append({"image_id": int(image_id), "category_id": int(cat), "bbox": box, "score": score})
    return out


def ground_truth_to_coco(gt: GroundTruth) -> dict[str, Any]:
    """:class:`GroundTruth` -> a COCO instances json dict (annotation ids ``1..G`` in row order);
    :func:`load_ground_truth` of it gives ``gt`` back."""
    ids = gt.image_ids[gt.image].tolist()
    cats = gt.category_ids[gt.category].tolist()
    annotations = [
        {"id": n, "image_id": i, "category_id": c, "bbox": b, "area": a, "iscrowd": int(z)}
        for n, (i, c, b, a, z) in enumerate(zip(ids, cats, gt.boxes.tolist(), gt.area.tolist(), gt.iscrowd.tolist()), 1)
    ]
    return {
        "images": [{"id": i} for i in gt.image_ids.tolist()],
        "annotations": annotations,
        "categories": [{"id": c, "name": n} for c, n in zip(gt.category_ids.tolist(), gt.category_names)],
    }


def results_to_coco(dt: Results, gt: GroundTruth) -> list[dict[str, Any]]:
    """:class:`Results` of ``gt`` -> a COCO results list; :func:`load_results` of it gives ``dt`` back."""
    ids = gt.image_ids[dt.image].tolist()
    cats = gt.category_ids[dt.category].tolist()
    return [
        {"image_id": i, "category_id": c, "bbox": b, "score": s}
        for i, c, b, s in zip(ids, cats, dt.boxes.tolist(), dt.scores.tolist())
    ]
