"""Masking dropped filters in the user's own model, without changing its module tree.

`banks.masked_forward` builds a graph copy of the model with a multiplication at each bank's mask
point (where the conv's channels are handed on: before another conv, a Linear, a residual add).
A user's loop calls its own model, not a copy, so here the same mask goes into a forward hook:
on the module at the mask point when that module is called once per forward pass, else on the
latest module of the chain from the conv to the mask point that is called once and after which
every operation maps a zero channel to zero. Dropped filters have zero weight, bias and BatchNorm
affine parameters (`subnet.apply_drops`), so a channel masked there is still zero at the mask
point: the result is the masked trace's, number for number. (A shared activation module, such as
a ResNet block's one `relu` called twice, is why the hook cannot always sit at the mask point.)

Hooks are added when a sub-network starts and removed when its filters are re-introduced: the
plain model runs with no hook and no overhead. Nothing is added to the state dict.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from orthocli.banks import PER_CHANNEL_FUNCTIONS, PER_CHANNEL_METHODS, PER_CHANNEL_MODULES, FilterBank
from orthocli.errors import UsageError
from orthocli.graph import ModelGraph

# Per-channel operations that map a zero channel to a non-zero one (sigmoid(0) = 0.5).
_NOT_ZERO_AT_ZERO_MODULES = (nn.Sigmoid, nn.Softplus)
_NOT_ZERO_AT_ZERO_FUNCTIONS = {torch.sigmoid, F.sigmoid, F.softplus}
_NOT_ZERO_AT_ZERO_METHODS = {"sigmoid"}


def _keeps_zero(node, modules: dict[str, nn.Module]) -> bool:
    """Whether this per-channel step maps a dropped (all-zero, zero-affine) channel to zero."""
    if node.op == "call_module":
        mod = modules[node.target]
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            return mod.affine  # gamma = beta = 0 for a dropped filter; without them (0 - mean)/std != 0
        return isinstance(mod, (*PER_CHANNEL_MODULES, nn.PReLU)) and not isinstance(mod, _NOT_ZERO_AT_ZERO_MODULES)
    if node.op == "call_function":
        return node.target in PER_CHANNEL_FUNCTIONS and node.target not in _NOT_ZERO_AT_ZERO_FUNCTIONS
    return node.target in PER_CHANNEL_METHODS and node.target not in _NOT_ZERO_AT_ZERO_METHODS


def hook_points(graph: ModelGraph, banks: Iterable[FilterBank]) -> dict[str, str | None]:
    """Bank name -> name of the module whose output takes that bank's mask; None when a bank has
    no such module (its channels pass a shared module and then a sigmoid, say)."""
    modules, calls = graph.modules, graph.calls
    points = {}
    for bank in banks:
        start = next(n for n in graph.nodes if n.op == "call_module" and n.target == bank.name)
        chain = [start]
        while chain[-1].name != bank.mask_node:  # the walk of `banks_from_model`, replayed
            chain.append(next(iter(chain[-1].users)))
        point = None
        for i in range(len(chain) - 1, -1, -1):
            node = chain[i]
            if node.op == "call_module" and calls[node.target] == 1:
                point = node.target
                break
            if not _keeps_zero(node, modules):
                break
        points[bank.name] = point
    return points


class ChannelMasks:
    """Multiplies banks' channels by a 0/1 mask at their hook points while active.

    `masks` (bank name -> tensor shaped (1, C, 1, ...)) may be edited in place; `activate(names)`
    adds the hooks, `remove()` takes them away again."""

    def __init__(self, graph: ModelGraph, banks: list[FilterBank]) -> None:
        self.model = model = graph.model
        self.points = hook_points(graph, banks)
        self.masks: dict[str, torch.Tensor] = {}
        for bank in banks:
            weight = model.get_parameter(bank.key)
            channels = weight.shape[1] * bank.groups if bank.transposed else weight.shape[0]
            self.masks[bank.name] = torch.ones(1, channels, *[1] * (weight.dim() - 2), device=weight.device)
        self._handles: list = []

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def check(self, names: Iterable[str]) -> None:
        """UsageError unless every bank named can be masked."""
        for name in names:
            if self.points[name] is None:
                raise UsageError(
                    f"layer '{name}': its dropped filters cannot be masked by a forward hook (its channels pass"
                    " a module called more than once, then a step that maps zero to non-zero, such as a sigmoid);"
                    " exclude the layer, or give that step a module of its own"
                )

    def activate(self, names: Iterable[str]) -> None:
        """Hook the masks of these banks (the others would multiply by ones)."""
        names = list(names)
        self.check(names)
        self.remove()
        by_module: dict[str, list[torch.Tensor]] = {}
        for name in names:
            by_module.setdefault(self.points[name], []).append(self.masks[name])
        for point, masks in by_module.items():
            self._handles.append(self.model.get_submodule(point).register_forward_hook(_multiply(masks)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _multiply(masks: list[torch.Tensor]):
    def hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        for m in masks:
            output = output * m.to(device=output.device, dtype=output.dtype)
        return output

    return hook
