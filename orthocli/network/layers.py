"""Conv layers, with what is known of each (groups, layout): found in a module or a bare state
dict, and chosen by name patterns. A checkpoint's layers: `checkpoint_model.CheckpointModel.convs`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

_CONV_TYPES = {
    "Conv1d": False,
    "Conv2d": False,
    "Conv3d": False,
    "ConvTranspose1d": True,
    "ConvTranspose2d": True,
    "ConvTranspose3d": True,
}


def filter_count(weight: torch.Tensor | np.ndarray, groups: int = 1, transposed: bool = False) -> int:
    """The filters (output channels) of a conv weight: a regular conv stores (out, in / groups,
    *kernel); a transposed one (in, out / groups, *kernel)."""
    return weight.shape[1] * groups if transposed else weight.shape[0]


@dataclass(frozen=True)
class ConvLayer:
    """One conv layer: `name` is its weight's key without the trailing ".weight"."""

    name: str
    key: str
    weight: torch.Tensor | np.ndarray  # a numpy array where `orthocli score` read the file without torch
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
            return (self.weight.shape[0] // self.groups) * math.prod(self.weight.shape[2:])
        return math.prod(self.weight.shape[1:])


def _layer_name(key: str) -> str:
    return key[: -len(".weight")] if key.endswith(".weight") else key


def convs_from_state_dict(state_dict: dict, known: bool = False) -> list[ConvLayer]:
    """Every floating-point tensor (or numpy array) named `*weight` with 3 to 5 dimensions is taken
    as a regular (not transposed) conv weight with groups=1: a bare state dict records nothing
    more. `known`: the caller knows every conv of this model is such a plain one."""
    from orthocli.arrays import is_floating

    layers = []
    for key, t in state_dict.items():
        if (key == "weight" or key.endswith(".weight")) and 3 <= t.ndim <= 5 and is_floating(t):
            layers.append(ConvLayer(_layer_name(key), key, t, known=known))
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
    """Filter layers by the patterns of `--layers` and `--exclude` (layer_patterns.py: a glob on the
    full name or a dotted suffix; include first, then exclude)."""
    from orthocli.network.layer_patterns import chosen

    return [layer for layer in layers if chosen(layer.name, include, exclude)]
