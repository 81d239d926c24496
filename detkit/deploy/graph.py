"""The exported graph: uint8 letterboxed images -> fixed-size padded detections, decoding and NMS included."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from detkit.models import Detector

__all__ = ["DeployGraph"]


class DeployGraph(nn.Module):
    """What ``detkit export`` writes: a detector with its normalisation, decoding and class-aware NMS.

    Input: ``images`` ``uint8 [B, 3, S, S]`` RGB, already letterboxed (longest side resized to the
    model's input size, zero padding bottom/right to the square ``S``; see
    :class:`~detkit.ops.Letterbox`). Outputs, for ``D = max_detections`` of the head's decoder:

    - ``boxes float32 [B, D, 4]``: xyxy in letterboxed input pixels,
    - ``scores float32 [B, D]``: descending,
    - ``labels int64 [B, D]``: class index (``-1`` past the count),
    - ``num_detections int64 [B]``: how many rows of each image are detections.
    """

    def __init__(self, detector: Detector, side: int, score_threshold: float | None = None) -> None:
        """Args:
        detector: The trained detector (evaluated as it is: put it in eval mode first).
        side: ``S``, the letterboxed square the graph is built for.
        score_threshold: Detections must score above this (default: the head decoder's).
        """
        super().__init__()
        self.detector = detector
        self.side = int(side)
        self.score_threshold = score_threshold
        was_training = detector.training
        detector.eval()  # the probe must not move BatchNorm statistics
        with torch.no_grad():  # the points per level of an S x S input, fixed once the size is
            probe = detector(torch.zeros(1, 3, self.side, self.side, device=next(detector.parameters()).device))
        detector.train(was_training)
        _, counts = torch.unique_consecutive(probe["point_strides"], return_counts=True)
        self.level_sizes = [int(c) for c in counts]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``uint8 [B, 3, S, S]`` -> ``(boxes, scores, labels, num_detections)`` (see the class docstring)."""
        outputs = self.detector(images.float() / 255.0)
        return self.detector.head.predict_padded(
            outputs, (self.side, self.side), self.level_sizes, self.score_threshold
        )
