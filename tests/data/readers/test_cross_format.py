"""The same small dataset written as COCO json, YOLO txt and VOC xml gives the same targets box by box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from detkit.data import CocoReader, VocReader, YoloReader

NAMES = ["cat", "dog", "bird"]
# file -> (height, width, [(class, x1, y1, x2, y2)]); c.png is a background image
DATA = {
    "a.png": (48, 64, [(0, 4.5, 6.25, 20.0, 30.5), (2, 0.0, 0.0, 64.0, 48.0)]),
    "b.png": (40, 32, [(1, 10.0, 12.0, 31.0, 39.0)]),
    "c.png": (20, 30, []),
}


def _write_all(root: Path, write_image, voc_xml) -> tuple[CocoReader, YoloReader, VocReader]:
    for name, (h, w, _) in DATA.items():
        write_image(root / "images" / name, h, w)
    images = [{"id": k + 1, "file_name": n, "height": h, "width": w} for k, (n, (h, w, _)) in enumerate(DATA.items())]
    annotations = [
        {"id": (k + 1) * 10 + j, "image_id": k + 1, "category_id": c + 1, "bbox": [x1, y1, x2 - x1, y2 - y1]}
        for k, (_, _, objs) in enumerate(DATA.values()) for j, (c, x1, y1, x2, y2) in enumerate(objs)
    ]  # fmt: skip
    categories = [{"id": c + 1, "name": n} for c, n in enumerate(NAMES)]
    (root / "coco.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    coco = CocoReader(root / "images", root / "coco.json")
    # convert from what the COCO reader returns (formats agree with each other, not with a fixture)
    (root / "labels").mkdir()
    (root / "xml").mkdir()
    for k, name in enumerate(coco.files):
        target, (h, w) = coco.target(k), coco.sizes[k]
        lines = [
            f"{c} {(x1 + x2) / 2 / w:.9f} {(y1 + y2) / 2 / h:.9f} {(x2 - x1) / w:.9f} {(y2 - y1) / h:.9f}"
            for c, (x1, y1, x2, y2) in zip(target["labels"].tolist(), target["boxes"].tolist())
        ]
        if lines:
            (root / "labels" / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
        objects = [(NAMES[c], *box) for c, box in zip(target["labels"].tolist(), target["boxes"].tolist())]
        (root / "xml" / f"{Path(name).stem}.xml").write_text(voc_xml(name, h, w, objects))
    yolo = YoloReader(root / "images", labels=root / "labels", class_names=NAMES)
    voc = VocReader(root / "images", root / "xml", class_names=NAMES)
    return coco, yolo, voc


def test_three_formats_agree_box_by_box(tmp_path: Path, write_image, voc_xml) -> None:
    coco, yolo, voc = _write_all(tmp_path, write_image, voc_xml)
    assert coco.class_names == yolo.class_names == voc.class_names == NAMES
    assert coco.files == yolo.files == voc.files == list(DATA)
    for k, (h, w, objs) in enumerate(DATA.values()):
        expected = np.asarray([o[1:] for o in objs], dtype=np.float32).reshape(-1, 4)
        for ds in (coco, yolo, voc):
            image, target = ds[k]
            assert image.shape == (h, w, 3)
            np.testing.assert_allclose(target["boxes"], expected, atol=1e-4, err_msg=type(ds).__name__)
            assert target["labels"].tolist() == [o[0] for o in objs]
            assert target["iscrowd"].tolist() == [0] * len(objs)
            np.testing.assert_allclose(target["area"], (expected[:, 2] - expected[:, 0]) * (expected[:, 3] - expected[:, 1]), rtol=1e-4)
    assert coco.issues.background_images == yolo.issues.background_images == voc.issues.background_images == ["c.png"]
