"""Structured channel pruning of a trained detector (Torch-Pruning), saved as a checkpoint that loads and fine-tunes."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detkit.checkpoints import load_detector_checkpoint
from detkit.models import Detector
from detkit.models.reshape import layer_shapes
from detkit.predictors.checkpoint import load_checkpoint_predictor

__all__ = ["prune_checkpoint", "prune_detector", "write_fine_tune_config"]


def _frozen_batch_norm_pruner(tp: Any) -> Any:
    """Torch-Pruning handler for torchvision's ``FrozenBatchNorm2d`` (its four buffers follow the
    channels of the convolution before it); Torch-Pruning knows only ``nn`` norms."""

    class FrozenBatchNormPruner(tp.pruner.BasePruningFunc):
        def prune_out_channels(self, layer: FrozenBatchNorm2d, idxs: list) -> FrozenBatchNorm2d:
            keep = sorted(set(range(layer.weight.shape[0])) - set(idxs))
            for name in ("weight", "bias", "running_mean", "running_var"):
                setattr(layer, name, getattr(layer, name)[keep].clone())
            return layer

        prune_in_channels = prune_out_channels

        def get_out_channels(self, layer: FrozenBatchNorm2d) -> int:
            return layer.weight.shape[0]

        get_in_channels = get_out_channels

    return FrozenBatchNormPruner()


def prune_detector(detector: Detector, ratio: float, side: int, round_to: int | None = 8) -> dict[str, list[int]]:
    """Remove the ``ratio`` least important channels (L2 magnitude of each dependency group) of every
    prunable group of ``detector``, in place; returns the changed layers' shapes (the ``pruned``
    argument of :class:`~detkit.models.Detector`).

    Torch-Pruning's dependency graph (traced on an ``S x S`` input) keeps coupled layers consistent:
    FPN lateral/output convolutions that are added together, the head's towers shared across
    levels, depthwise convolutions, BatchNorm / FrozenBatchNorm / GroupNorm after a convolution
    (GroupNorm loses whole groups, so its kept channels are normalised as they were trained). The
    head's prediction layers keep their outputs (classes, box sides). Channel counts are rounded to
    multiples of ``round_to``: oneDNN and onnxruntime run irregular widths (45, 67, ...) slower
    than the wider aligned ones.
    """
    try:
        import torch_pruning as tp
    except ImportError as error:
        raise ImportError("pruning needs Torch-Pruning: pip install 'detkit[deploy]'") from error
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    before = layer_shapes(detector)
    shapes_of_others = {n: p.shape for n, p in detector.named_parameters()}
    detector.eval()
    example = torch.rand(1, 3, side, side, device=next(detector.parameters()).device)
    kept = detector.head.prediction_layers()
    custom = {FrozenBatchNorm2d: _frozen_batch_norm_pruner(tp)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Torch-Pruning's notes on parameters outside layers (FCOS scales)
        # Layers tied to a GroupNorm (the head's towers) lose whole GroupNorm groups, in a pass of their
        # own: the kept channels are then normalised over exactly the channels they were trained with.
        # (Torch-Pruning would take the same number of channels out of every group, which renormalises
        # them all, and its round_to leaves such layers unpruned.)
        pruner = tp.pruner.MetaPruner(
            detector, example, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
            ignored_layers=kept + _group_norm_convs(tp, detector, example, kept, custom), customized_pruners=custom,
            round_to=round_to,
        )  # fmt: skip
        pruner.step()
        unpruned = _remove_group_norm_groups(tp, detector, example, ratio, kept, custom, round_to)
    if unpruned:
        warnings.warn(f"pruning left these GroupNorm-coupled layers as they were: {'; '.join(unpruned)}", stacklevel=2)
    after = layer_shapes(detector)
    layer_params = {f"{name}.{p}" for name in after for p in ("weight", "bias")}
    moved = [n for n, p in detector.named_parameters() if n not in layer_params and p.shape != shapes_of_others[n]]
    if moved:
        raise RuntimeError(f"pruning changed parameters outside convolution/normalisation layers: {moved}")
    return {name: shape for name, shape in after.items() if shape != before[name]}


def _group_norm_convs(tp: Any, detector: nn.Module, example: torch.Tensor, kept: list, custom: dict) -> list[nn.Conv2d]:
    """The convolutions whose output channels are coupled to a ``GroupNorm`` (Torch-Pruning's dependency graph)."""
    graph = tp.DependencyGraph().build_dependency(detector, example_inputs=example, customized_pruners=custom)
    found: list[nn.Conv2d] = []
    for group in graph.get_all_groups(ignored_layers=kept, root_module_types=[nn.Conv2d]):
        modules = [dep.target.module for dep, _ in group]
        if any(isinstance(m, nn.GroupNorm) for m in modules):
            found += [
                dep.target.module for dep, _ in group
                if isinstance(dep.target.module, nn.Conv2d) and graph.is_out_channel_pruning_fn(dep.handler)
                and dep.target.module not in found
            ]  # fmt: skip
    return found


def _remove_group_norm_groups(
    tp: Any, detector: nn.Module, example: torch.Tensor, ratio: float, kept: list, custom: dict, round_to: int | None
) -> list[str]:
    """Prune each GroupNorm-coupled dependency group of ``detector`` by whole GroupNorm groups, in place.

    The GroupNorm groups of least summed L2 magnitude go, ``ratio`` of them rounded down so the
    kept channels stay a multiple of ``round_to``. A grouped convolution in the dependency group
    loses the same groups in each of its blocks (Torch-Pruning slices grouped convolutions as if
    every block lost the same positions). Returns why some dependency groups stay unpruned.
    """
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    graph = tp.DependencyGraph().build_dependency(detector, example_inputs=example, customized_pruners=custom)
    names = {m: n for n, m in detector.named_modules()}
    done: set[int] = set()
    unpruned: list[str] = []
    for group in graph.get_all_groups(ignored_layers=kept, root_module_types=[nn.Conv2d]):
        modules = list({id(dep.target.module): dep.target.module for dep, _ in group}.values())
        norms = [m for m in modules if isinstance(m, nn.GroupNorm)]
        if not norms or all(id(n) in done for n in norms):
            continue
        done.update(id(n) for n in norms)
        label = ", ".join(names.get(n, "?") for n in norms)
        sizes = {(n.num_groups, n.num_channels) for n in norms}
        blocks = math.lcm(1, *(m.groups for m in modules if isinstance(m, nn.Conv2d) and 1 < m.groups < m.in_channels))
        scores = importance(group)
        if len(sizes) != 1 or scores is None or scores.numel() != next(iter(sizes))[1] or next(iter(sizes))[0] % blocks:
            unpruned.append(f"{label} (GroupNorms {sorted(sizes)}, convolution groups {blocks})")
            continue
        ((groups, channels),) = sizes
        per_group, per_block = channels // groups, groups // blocks
        step = round_to // math.gcd(round_to, per_group * blocks) if round_to else 1  # kept channels % round_to == 0
        keep = max(step, int(per_block * (1 - ratio)) // step * step)  # GroupNorm groups kept per block
        if keep >= per_block:
            unpruned.append(f"{label} ({groups} GroupNorm groups: too few to remove {ratio:.0%} of them whole)")
            continue
        weakest = scores.view(blocks, per_block, per_group).sum((0, 2)).argsort()[: per_block - keep].cpu()
        removed = (torch.arange(blocks)[:, None] * per_block + weakest[None]).flatten()  # the same ones in each block
        idxs = (removed[:, None] * per_group + torch.arange(per_group)).flatten()
        root = group[0].dep
        graph.get_pruning_group(root.target.module, root.handler, sorted(idxs.tolist())).prune()
        for norm in norms:
            norm.num_groups = keep * blocks
    return unpruned


def prune_checkpoint(
    ckpt_path: str | Path, out_path: str | Path, ratio: float, trusted: Sequence[str] = ()
) -> tuple[Path, dict[str, Any]]:
    """Prune a ``detkit fit`` checkpoint and write the result as a new checkpoint.

    The new checkpoint holds the pruned weights (EMA-averaged ones, if the run kept an average,
    are what the checkpoint's ``detector.`` weights are) and a detector config whose ``pruned``
    argument rebuilds the narrower layers, so :func:`~detkit.inference.load_detector` loads it and
    ``detkit fit ... --model.init_weights OUT`` fine-tunes it (with that detector config). Optimizer
    and loop states are dropped: it starts a new run, it does not resume one.

    ``trusted``: modules besides detkit whose classes the config may name (see
    :func:`~detkit.inference.load_detector`).

    Returns:
        ``(out_path, detector config)``.
    """
    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    model = load_checkpoint_predictor(ckpt_path, trusted=trusted)  # errors name the file
    checkpoint, _ = load_detector_checkpoint(ckpt_path)  # its detkit block and the rest, current format
    meta = checkpoint["detkit"]
    detector = model.detector
    pruned = prune_detector(detector, ratio, model.letterbox.padded_size)
    config = copy.deepcopy(meta["detector"])
    previous = config["init_args"].get("pruned") or {}
    config["init_args"]["pruned"] = {**previous, **pruned}
    out = {
        "state_dict": {f"detector.{k}": v for k, v in detector.state_dict().items()},
        "detkit": {**meta, "detector": config, "pruned_from": str(ckpt_path), "pruning_ratio": ratio},
    }
    for key in ("pytorch-lightning_version", "hyper_parameters"):
        if key in checkpoint:
            out[key] = checkpoint[key]
    if isinstance(out.get("hyper_parameters"), dict) and "detector" in out["hyper_parameters"]:
        out["hyper_parameters"] = {**out["hyper_parameters"], "detector": config}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, out_path)
    return out_path, config


def write_fine_tune_config(pruned_path: str | Path, detector_config: dict[str, Any]) -> Path:
    """Write ``<pruned_path>.yaml`` beside a pruned checkpoint: the ``model`` block (the pruned
    ``detector`` config and ``init_weights``) that fine-tunes it, given after the run's own config
    (``detkit fit --config RUN.yaml --config <pruned>.yaml``). Returns its path."""
    import yaml

    recipe = Path(pruned_path).with_suffix(".yaml")
    recipe.write_text(yaml.safe_dump({"model": {"detector": detector_config, "init_weights": str(pruned_path)}}, sort_keys=False))
    return recipe
