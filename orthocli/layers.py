"""Conv layers, with what is known of each (groups, layout): found in a module or a bare state
dict, and chosen by name patterns. A checkpoint's layers: `checkpoint_model.CheckpointModel.convs`."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_CONV_TYPES = {
    "Conv1d": False,
    "Conv2d": False,
    "Conv3d": False,
    "ConvTranspose1d": True,
    "ConvTranspose2d": True,
    "ConvTranspose3d": True,
}


def filter_count(weight: torch.Tensor, groups: int = 1, transposed: bool = False) -> int:
    """The filters (output channels) of a conv weight: a regular conv stores (out, in / groups,
    *kernel); a transposed one (in, out / groups, *kernel)."""
    return weight.shape[1] * groups if transposed else weight.shape[0]


@dataclass(frozen=True)
class ConvLayer:
    """One conv layer: `name` is its weight's key without the trailing ".weight"."""

    name: str
    key: str
    weight: torch.Tensor
    groups: int = 1
    transposed: bool = False
    # True where the module was seen (TorchScript, trusted module, orthocli architecture);
    # False where groups and layout were assumed from a bare weight's shape.
    known: bool = False

    @property
    def filters(self) -> int:
        return filter_count(self.weight, self.groups, self.transposed)

    @property
    def fan_in(self) -> int:
        """Length of one filter as a vector: (in / groups) * prod(kernel)."""
        if self.transposed:
            return (self.weight.shape[0] // self.groups) * self.weight[0, 0].numel()
        return self.weight[0].numel()


def _layer_name(key: str) -> str:
    return key[: -len(".weight")] if key.endswith(".weight") else key


def convs_from_state_dict(state_dict: dict[str, torch.Tensor]) -> list[ConvLayer]:
    """Every floating-point tensor named `*weight` with 3 to 5 dimensions is taken as a regular
    (not transposed) conv weight with groups=1: a bare state dict records nothing more."""
    layers = []
    for key, t in state_dict.items():
        if (key == "weight" or key.endswith(".weight")) and 3 <= t.dim() <= 5 and t.is_floating_point():
            layers.append(ConvLayer(_layer_name(key), key, t))
    return layers


def convs_from_module(module) -> list[ConvLayer]:
    """Conv layers of an nn.Module or a TorchScript module, with their real groups and layout."""
    import torch

    layers = []
    for mod_name, mod in module.named_modules():
        if isinstance(mod, torch.nn.modules.conv._ConvNd):
            kind, transposed = type(mod).__name__, bool(mod.transposed)
        else:
            kind = getattr(mod, "original_name", None)
            if kind not in _CONV_TYPES:
                continue
            transposed = _CONV_TYPES[kind]
        weight = getattr(mod, "weight", None)
        if weight is None or not 3 <= weight.dim() <= 5:
            continue
        key = f"{mod_name}.weight" if mod_name else "weight"
        layers.append(
            ConvLayer(_layer_name(key), key, weight.detach(), int(getattr(mod, "groups", 1)), transposed, True)
        )
    return layers


def select(layers: Iterable[ConvLayer], include: list[str] | None, exclude: list[str] | None) -> list[ConvLayer]:
    """Filter layers by shell-style globs on their names (include first, then exclude)."""
    out = []
    for layer in layers:
        if include and not any(fnmatch.fnmatchcase(layer.name, g) for g in include):
            continue
        if exclude and any(fnmatch.fnmatchcase(layer.name, g) for g in exclude):
            continue
        out.append(layer)
    return out
