"""Looking inside a detector: the feature maps of every backbone stage and pyramid level, as tensors and as pictures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from detkit.data.images import ImageLike, to_rgb_array
from detkit.predictors import BasePredictor

__all__ = ["feature_maps", "letterboxed_input", "save_feature_grids", "top_channels"]


def letterboxed_input(model: BasePredictor, image: ImageLike) -> tuple[np.ndarray, Tensor]:
    """``image`` letterboxed as ``model`` predicts it: ``(uint8 [S, S, 3], FloatTensor[1, 3, S, S] in [0, 1])``."""
    padded, _ = model.letterbox(to_rgb_array(image))
    tensor = torch.from_numpy(padded.astype(np.float32) / 255.0).permute(2, 0, 1)[None].to(model.device)
    return padded, tensor


@torch.inference_mode()
def feature_maps(model: BasePredictor, image: ImageLike) -> dict[str, Tensor]:
    """The feature maps of one image, by layer.

    Keys are ``"backbone.<i>"`` for the backbone's outputs and ``"neck.P<k>"`` for the pyramid
    levels (``k = log2(stride)``), in the order of their ``feature_info`` (increasing stride).
    Values are ``FloatTensor[C, H / s, W / s]`` over the letterboxed (and stride-padded) input,
    ``C`` and ``s`` as the ``feature_info`` of the backbone or neck declare them.
    """
    detector = model.detector
    captured: dict[str, list[Tensor]] = {}
    hooks = [
        detector.backbone.register_forward_hook(lambda m, i, out: captured.__setitem__("backbone", list(out))),
        detector.neck.register_forward_hook(lambda m, i, out: captured.__setitem__("neck", list(out))),
    ]
    try:
        detector.feature_maps(letterboxed_input(model, image)[1])
    finally:
        for hook in hooks:
            hook.remove()
    maps = {f"backbone.{i}": f[0].float().cpu() for i, f in enumerate(captured["backbone"])}
    for info, level in zip(detector.neck.feature_info, captured["neck"]):
        maps[f"neck.P{round(math.log2(info.stride))}"] = level[0].float().cpu()
    return maps


def top_channels(feature: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` channels of ``feature [C, H, W]`` with the largest mean activation, largest first."""
    return feature.mean(dim=(1, 2)).topk(min(k, feature.shape[0])).indices


def _strides(model: BasePredictor) -> dict[str, int]:
    detector = model.detector
    strides = {f"backbone.{i}": info.stride for i, info in enumerate(detector.backbone.feature_info)}
    strides.update({f"neck.P{round(math.log2(info.stride))}": info.stride for info in detector.neck.feature_info})
    return strides


def save_feature_grids(
    model: BasePredictor, image: ImageLike, out_dir: str | Path, layers: list[str] | None = None, channels: int = 16
) -> list[Path]:
    """Write, per layer, ``<layer>.png``: a grid of its ``channels`` most active channels (each
    min-max scaled, labelled with the channel index), titled with the layer, its stride and its
    channel count; and ``mean_activation.png``: each layer's mean over channels overlaid on the
    letterboxed image.

    Args:
        model: A loaded detector (:func:`detkit.load_detector`).
        image: One image (path, PIL, array or tensor).
        out_dir: Folder of the PNGs (created).
        layers: Keys of :func:`feature_maps` to draw (default: all).
        channels: Channels per grid.

    Returns:
        The PNGs written.

    Raises:
        ValueError: An unknown layer name (the known ones are listed).
    """
    from matplotlib.figure import Figure  # no pyplot: no backend to choose, no global figure list

    maps = feature_maps(model, image)
    unknown = sorted(set(layers or ()) - set(maps))
    if unknown:
        raise ValueError(f"unknown layers {unknown}; this detector has {list(maps)}")
    chosen = {name: maps[name] for name in (layers or list(maps))}
    strides = _strides(model)
    padded, _ = letterboxed_input(model, image)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, feature in chosen.items():
        order = top_channels(feature, channels)
        cols = math.ceil(math.sqrt(len(order)))
        rows = math.ceil(len(order) / cols)
        fig = Figure(figsize=(max(2 * cols, 4), 2 * rows + 0.6))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, channel in zip(axes.flat, order.tolist()):
            ax.imshow(feature[channel].numpy(), cmap="viridis")
            ax.set_title(f"ch {channel}", fontsize=8)
        fig.suptitle(f"{name}: stride {strides[name]}, {feature.shape[0]} channels\ntop {len(order)} by mean activation",
                     fontsize=10)  # fmt: skip
        fig.tight_layout()
        path = out / f"{name}.png"
        fig.savefig(path, dpi=80)
        written.append(path)
    cols = len(chosen)
    fig = Figure(figsize=(3 * cols, 3.4))
    axes = fig.subplots(1, cols, squeeze=False)
    for ax, (name, feature) in zip(axes[0], chosen.items()):
        mean = feature.mean(dim=0).numpy()
        ax.imshow(padded)
        ax.imshow(mean, cmap="jet", alpha=0.5, extent=(0, mean.shape[1] * strides[name], mean.shape[0] * strides[name], 0))
        ax.set(title=f"{name} (stride {strides[name]})", xlim=(0, padded.shape[1]), ylim=(padded.shape[0], 0))
        ax.axis("off")
    fig.tight_layout()
    path = out / "mean_activation.png"
    fig.savefig(path, dpi=80)
    return [*written, path]


def explain_images(model: BasePredictor, images: list[Path], out_dir: Path, layers: list[str] | None, channels: int) -> list[Path]:
    """:func:`save_feature_grids` for each image, into ``out_dir/<image stem>/``."""
    written: list[Path] = []
    for path in images:
        written += save_feature_grids(model, path, out_dir / path.stem, layers, channels)
    return written
