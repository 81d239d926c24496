"""Tests for detkit.pictures.gradcam: each detection's map peaks inside its own box and differs between objects."""

import numpy as np
import pytest
from tiny import SHAPE_NAMES

from detkit.data import ShapesReader
from detkit.pictures.gradcam import detection_maps, save_gradcam
from detkit.inference import Predictor

#: Detections drawn for the user: the tiny model's confident ones.
KEPT = 0.4


@pytest.fixture(scope="module")
def trained(trained_shapes_module):
    return Predictor(trained_shapes_module.detector, SHAPE_NAMES, input_size=96, pad_multiple=32)


def _peak_inside(detection) -> bool:
    y, x = np.unravel_index(np.argmax(detection["map"]), detection["map"].shape)
    x1, y1, x2, y2 = detection["box"]
    return x1 - 1 <= x <= x2 + 1 and y1 - 1 <= y <= y2 + 1


def _separate(a, b) -> bool:
    """Boxes that do not overlap: two different objects."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a["box"], b["box"]
    return max(ax1, bx1) >= min(ax2, bx2) or max(ay1, by1) >= min(ay2, by2)


def _peaks(model, method):
    reader = ShapesReader(32, seed=99, max_shapes=2)  # images the model never saw
    inside, total, pairs = 0, 0, []
    for index in range(len(reader)):
        image, _ = reader[index]
        padded, detections = detection_maps(model, image, top=None, score_threshold=KEPT, method=method)
        for d in detections:
            assert d["map"].shape == padded.shape[:2] and 0 <= d["map"].min() <= d["map"].max() <= 1
        inside += sum(_peak_inside(d) for d in detections)
        total += len(detections)
        pairs += [(a["map"], b["map"]) for i, a in enumerate(detections) for b in detections[i + 1 :] if _separate(a, b)]
    return inside, total, pairs


def test_hirescam_peaks_inside_each_detection_and_differs_between_objects(trained):
    inside, total, pairs = _peaks(trained, "hirescam")
    assert total >= 20 and len(pairs) >= 3, (total, len(pairs))
    assert inside / total >= 0.9, f"{inside}/{total} HiResCAM peaks inside their box"
    assert all(np.abs(a - b).max() > 0.5 for a, b in pairs), "two objects' detections got the same map"


def test_pooled_gradcam_is_less_local_than_hirescam(trained):
    """Grad-CAM's spatially pooled weights light up every similar object (why HiResCAM is the default)."""
    gradcam_inside, gradcam_total, _ = _peaks(trained, "gradcam")
    hires_inside, hires_total, _ = _peaks(trained, "hirescam")
    assert gradcam_total == hires_total
    assert gradcam_inside < hires_inside, (gradcam_inside, hires_inside, hires_total)


def test_all_levels_eigencam_and_the_picture(trained, tmp_path):
    image, _ = ShapesReader(1, seed=5)[0]
    _, combined = detection_maps(trained, image, top=2, levels="all")
    _, eigen = detection_maps(trained, image, top=2, method="eigencam")
    assert len(combined) == len(eigen) == 2 and all(d["map"].max() == pytest.approx(1.0) for d in combined + eigen)
    path = save_gradcam(trained, image, tmp_path / "gradcam.png", top=4)
    assert path.read_bytes()[:4] == b"\x89PNG"
