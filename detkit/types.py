"""The box contract shared by every public boundary: targets and detections as typed dicts.

All boxes are float ``xyxy`` in absolute pixels, ``0 <= x1 < x2 <= W`` and ``0 <= y1 < y2 <= H``,
the torchvision / torchmetrics convention. Conversions to other encodings happen only inside
heads and losses, through :mod:`detkit.ops.boxes`.
"""

from __future__ import annotations

from torch import Tensor
from typing_extensions import NotRequired, TypedDict


class Target(TypedDict, total=False):
    """Ground truth for one image.

    Keys:
        boxes: ``FloatTensor[N, 4]`` xyxy in the pixels of the image it travels with.
        labels: ``Int64Tensor[N]`` contiguous class indices in ``[0, num_classes)``.
        image_id: ``int`` identifier of the image (the COCO id where there is one).
        iscrowd: ``Int64Tensor[N]``, 1 for crowd / ignored boxes (COCO ``iscrowd``, VOC ``difficult``).
        area: ``FloatTensor[N]`` area in original-image pixels, used for COCO's size ranges.
        orig_size: ``Int64Tensor[2]`` ``(height, width)`` of the original image.
        scale: ``FloatTensor[2]`` input pixels per original pixel along ``(x, y)`` (the letterbox's
            exact factors, see :class:`detkit.ops.letterbox.Letterbox`).
        orig_boxes: ``FloatTensor[N, 4]`` (evaluation items) the same boxes in original-image
            pixels, as the reader gave them: what evaluation scores against.
        file_name: ``str`` the image's file, relative to its reader's image folder.
    """

    boxes: Tensor
    labels: Tensor
    image_id: int
    iscrowd: Tensor
    area: Tensor
    orig_size: Tensor
    scale: Tensor
    orig_boxes: Tensor
    file_name: str


class Detections(TypedDict):
    """Predictions for one image.

    Keys:
        boxes: ``FloatTensor[D, 4]`` xyxy in pixels.
        scores: ``FloatTensor[D]`` confidence in ``[0, 1]``, sorted descending.
        labels: ``Int64Tensor[D]`` contiguous class indices.
        point_index: ``Int64Tensor[D]`` (optional) the head's point each detection was decoded from:
            a flat index into its ``P`` points, levels concatenated in order and row-major within
            a level (what :func:`detkit.models.make_points` enumerates).
        level: ``Int64Tensor[D]`` (optional) the pyramid level of that point, an index into the
            head's ``in_features`` (0 = finest).
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    point_index: NotRequired[Tensor]
    level: NotRequired[Tensor]
