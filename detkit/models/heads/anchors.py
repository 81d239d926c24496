"""Anchor boxes for anchor-based heads: RetinaNet's octave scales x aspect ratios at every cell of every level."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["AnchorGrid"]


class AnchorGrid(nn.Module):
    """The anchors of a RetinaNet-style head, placed like torchvision's ``AnchorGenerator``.

    At a level of stride ``s`` the anchors of one cell have sizes
    ``int(size_per_stride * s * 2 ** (i / scales_per_octave))`` for ``i < scales_per_octave``, each
    at every aspect ratio ``r = h / w`` (width ``size / sqrt(r)``, height ``size * sqrt(r)``, corners
    rounded to whole pixels), ordered ratio-major as torchvision orders them. They sit at
    ``((j + offset) * s, (i + offset) * s)`` for cell ``(i, j)``. The defaults are RetinaNet's
    (Lin et al. 2017) as torchvision builds them for ``retinanet_resnet50_fpn(_v2)``: sizes 32, 40, 50
    at stride 8 up to 512, 645, 812 at stride 128, ratios 0.5, 1, 2, anchors on the cells' top-left
    corners. Parameter-free: the head asks it for anchors of its feature sizes.
    """

    def __init__(
        self,
        size_per_stride: float = 4.0,
        scales_per_octave: int = 3,
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        offset: float = 0.0,
    ) -> None:
        """Describe the anchors.

        Args:
            size_per_stride: Smallest anchor size of a level in strides (4: 32 px at stride 8).
            scales_per_octave: Sizes per level, spaced by ``2 ** (1 / scales_per_octave)``.
            aspect_ratios: Height / width ratios of the anchors at each size.
            offset: Anchor centre within its cell, in cells (``0.0`` top-left corner as torchvision,
                ``0.5`` the centre).
        """
        super().__init__()
        if size_per_stride <= 0 or scales_per_octave < 1 or not aspect_ratios or min(aspect_ratios) <= 0:
            raise ValueError(
                "size_per_stride and aspect_ratios must be > 0 and scales_per_octave >= 1, got "
                f"{size_per_stride}, {list(aspect_ratios)}, {scales_per_octave}"
            )
        self.size_per_stride = float(size_per_stride)
        self.scales_per_octave = int(scales_per_octave)
        self.aspect_ratios = [float(r) for r in aspect_ratios]
        self.offset = float(offset)

    @property
    def num_per_location(self) -> int:
        """Anchors at each cell ``A``."""
        return self.scales_per_octave * len(self.aspect_ratios)

    def sizes(self, stride: int) -> list[int]:
        """Anchor sizes at a level of this stride (whole pixels, truncated as torchvision does)."""
        base = self.size_per_stride * stride
        return [int(base * 2 ** (i / self.scales_per_octave)) for i in range(self.scales_per_octave)]

    def cell_anchors(self, stride: int, device: torch.device | str | None = None) -> Tensor:
        """``(A, 4)`` xyxy anchors of one cell around ``(0, 0)``, ratio-major, corners rounded."""
        scales = torch.as_tensor(self.sizes(stride), dtype=torch.float32, device=device)
        ratios = torch.as_tensor(self.aspect_ratios, dtype=torch.float32, device=device)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h_ratios[:, None] * scales[None, :]).view(-1)
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()

    def forward(
        self, feature_sizes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Every anchor of every level.

        Args:
            feature_sizes: ``(H_l, W_l)`` per level.
            strides: Stride per level.
            device: Device of the outputs.

        Returns:
            ``anchors (N, 4)`` xyxy in input pixels, ``centres (N, 2)`` and ``strides (N,)`` float32,
            ``N = A * sum_l H_l * W_l``, ordered level, row, column, then anchor (the order of a
            ``(B, A * C, H, W) -> (B, H * W * A, C)`` head output).
        """
        if len(feature_sizes) != len(strides):
            raise ValueError(f"got {len(feature_sizes)} feature sizes but {len(strides)} strides")
        anchors, strides_out = [], []
        for (h, w), s in zip(feature_sizes, strides):
            ys = (torch.arange(h, dtype=torch.float32, device=device) + self.offset) * s
            xs = (torch.arange(w, dtype=torch.float32, device=device) + self.offset) * s
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=-1).repeat(1, 2)  # (HW, 4)
            level = (shifts[:, None, :] + self.cell_anchors(s, device)[None]).reshape(-1, 4)  # (HW * A, 4)
            anchors.append(level)
            strides_out.append(torch.full((level.shape[0],), float(s), device=device))
        anchors_all = torch.cat(anchors)
        centres = 0.5 * (anchors_all[:, :2] + anchors_all[:, 2:])
        return anchors_all, centres, torch.cat(strides_out)
