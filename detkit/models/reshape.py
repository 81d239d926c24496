"""Layer shapes of a pruned model: record them by module name and rebuild a fresh model's layers to match."""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = ["layer_shapes", "reshape_layers"]


def _shape(module: nn.Module) -> list[int] | None:
    """``Conv2d``: ``[in, out, groups]``; ``BatchNorm2d`` / ``FrozenBatchNorm2d``: ``[channels]``;
    ``GroupNorm``: ``[groups, channels]``; other modules: ``None``."""
    if isinstance(module, nn.Conv2d):
        return [module.in_channels, module.out_channels, module.groups]
    if isinstance(module, nn.BatchNorm2d):
        return [module.num_features]
    if isinstance(module, FrozenBatchNorm2d):
        return [module.weight.shape[0]]
    if isinstance(module, nn.GroupNorm):
        return [module.num_groups, module.num_channels]
    return None


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """The channel shape of every convolution and normalisation layer of ``model``, by module name."""
    return {name: shape for name, module in model.named_modules() if (shape := _shape(module)) is not None}


def _rebuilt(module: nn.Module, shape: list[int]) -> nn.Module:
    """A new layer like ``module`` (same kernel, stride, eps, ...) with the channel ``shape`` (fresh weights)."""
    if isinstance(module, nn.Conv2d):
        in_channels, out_channels, groups = shape
        return nn.Conv2d(
            in_channels, out_channels, module.kernel_size, module.stride, module.padding, module.dilation,
            groups, module.bias is not None, module.padding_mode,
        )  # fmt: skip
    if isinstance(module, nn.BatchNorm2d):
        return type(module)(shape[0], module.eps, module.momentum, module.affine, module.track_running_stats)
    if isinstance(module, FrozenBatchNorm2d):
        return FrozenBatchNorm2d(shape[0], module.eps)
    if isinstance(module, nn.GroupNorm):
        return nn.GroupNorm(shape[0], shape[1], module.eps, module.affine)
    raise ValueError(f"cannot reshape a {type(module).__name__}")


def reshape_layers(model: nn.Module, shapes: dict[str, list[int]]) -> None:
    """Replace the layers named in ``shapes`` (as :func:`layer_shapes` writes them) with layers of
    those channel shapes, in place; their weights are fresh, for a pruned state dict to load into.

    Raises:
        ValueError: A name that is not a convolution or normalisation layer of ``model``.
    """
    modules = dict(model.named_modules())
    for name, shape in shapes.items():
        old = modules.get(name)
        if old is None or _shape(old) is None:
            raise ValueError(f"pruned layer {name!r} is not a convolution or normalisation layer of {type(model).__name__}")
        if type(old) not in (nn.Conv2d, nn.BatchNorm2d, FrozenBatchNorm2d, nn.GroupNorm):
            raise ValueError(f"pruned layer {name!r} is a {type(old).__name__}, a subclass that cannot be rebuilt")
        tensors = [*old.parameters(), *old.buffers()]
        new = _rebuilt(old, list(shape)).to(tensors[0].device if tensors else "cpu")
        for fresh, previous in zip(new.parameters(), old.parameters()):
            fresh.requires_grad_(previous.requires_grad)  # frozen backbone stages stay frozen
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, new)
