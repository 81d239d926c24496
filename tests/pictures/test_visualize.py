"""Tests for detkit.pictures.visualize: filled caption labels in a fixed colour per class, never clipped at the border."""

import numpy as np
import torch

from detkit.pictures.visualize import PALETTE, class_color, draw_detections

NAMES = ["circle", "square", "triangle"]


def _draw(image: np.ndarray, boxes: list[list[float]], labels: list[int], scores=None, **kwargs) -> np.ndarray:
    return draw_detections(image, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels),
                           NAMES, None if scores is None else torch.tensor(scores), **kwargs)  # fmt: skip


def test_caption_sits_on_a_filled_label_of_the_class_colour():
    image = np.full((200, 300, 3), (200, 0, 0), np.uint8)  # red: dark green text alone would be unreadable
    drawn = _draw(image, [[50, 80, 150, 180]], [2], [0.83], font_size=16, width=2)
    color = np.array(class_color(2))
    label = drawn[55:80, 50:120]  # above the box, where the caption goes
    filled = (np.abs(label.astype(int) - color).sum(-1) == 0).mean()
    text = (np.abs(label.astype(int) - (255, 255, 255)).sum(-1) < 60).mean()  # white on the dark green label
    assert filled > 0.5, filled
    assert text > 0.03, text
    assert (drawn[100:170, 60:140] == image[100:170, 60:140]).all()  # the box's inside is untouched


def test_a_class_keeps_its_colour_across_images_and_classes_differ():
    outline = []
    for value in (0, 255):
        image = np.full((120, 120, 3), value, np.uint8)
        drawn = _draw(image, [[20, 40, 100, 110]], [1], width=3)
        outline.append(tuple(drawn[75, 21]))  # a pixel of the left edge
    assert outline[0] == outline[1] == class_color(1)
    colors = [class_color(k) for k in range(40)]
    assert len(set(colors)) == 40 and colors[0] == tuple(int(PALETTE[0][i : i + 2], 16) for i in (1, 3, 5))


def test_labels_at_the_border_stay_inside_the_image():
    image = np.zeros((100, 100, 3), np.uint8)
    # A box at the top-right corner: no room above, and a caption wider than the room to the right.
    drawn = _draw(image, [[85, 0, 100, 30]], [0], [0.99], font_size=14, width=1)
    color = np.array(class_color(0))
    rows, cols = np.nonzero((np.abs(drawn.astype(int) - color).sum(-1) == 0))
    assert rows.min() == 0 and cols.max() == 99
    assert cols.min() < 85  # moved left so the whole caption fits
    caption_cols = np.nonzero((drawn[:18] > 200).all(-1).any(0))[0]  # white text inside the label
    assert len(caption_cols) and caption_cols.min() > cols.min() and caption_cols.max() < 99  # text inside its label


def test_text_scales_with_the_image_and_no_boxes_is_a_copy():
    small, large = np.zeros((160, 160, 3), np.uint8), np.zeros((1280, 1280, 3), np.uint8)
    heights = []
    for image in (small, large):
        drawn = _draw(image, [[10, 60, 100, 150]], [1], [0.5])
        mask = (np.abs(drawn.astype(int) - class_color(1)).sum(-1) == 0)
        rows = np.nonzero(mask[:60].any(1))[0]  # the label above the box
        heights.append(rows.max() - rows.min() + 1)
    assert heights[1] > 2 * heights[0], heights
    empty = _draw(small, [], [])
    assert (empty == small).all() and empty is not small
