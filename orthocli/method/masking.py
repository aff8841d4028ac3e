"""Masking dropped filters in the user's own model, without changing its module tree.

`banks.masked_forward` builds a graph copy of the model with a multiplication at each bank's mask
point (where the conv's channels are handed on: before another conv, a Linear, a residual add). A
user's loop calls its own model, not a copy, and here the same result comes from two means:

- **Zeroing, where it is exact.** A dropped filter has zero weight, bias and BatchNorm affine
  parameters (`subnet.apply_drops`, held there bit for bit by `subnet.Freezer`), so its channel is
  zero from the conv on; where every step from the conv to the mask point maps a zero channel to
  zero (BatchNorm with its affine parameters, ReLU and the like, pooling, dropout), the channel is
  zero at the mask point without any mask. Most networks need nothing else, so their forward pass
  is the user's own, untouched, and `torch.compile` sees it as it is.
- **A forward hook, where zero does not stay zero** (a sigmoid, sigmoid(0) = 0.5; a hard sigmoid;
  a BatchNorm without affine parameters, (0 - mean) / std; decided by what each step does to zero,
  `zero_steps.keeps_zero`, not by its name): the hook multiplies by a mask tensor, on the module
  at the mask point when that module is called once per forward pass, else on the latest module of
  the chain from the conv to the mask point that is called once and after which every operation
  maps a zero channel to zero. (A shared activation module, such as a ResNet block's one `relu`
  called twice, is why the hook cannot always sit at the mask point.)

Either way the result is the masked trace's, number for number. The hooks are installed once (the
controller does it when it is created) and stay; between sub-networks their masks hold ones.
`torch.compile` does not see a hook added after it compiled a module, so installing them before
the first compiled call, and changing only the masks' values afterwards, is what keeps a compiled
model masked; a mask's values change in place, which recompiles nothing. Nothing is added to the
state dict.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from orthocli.errors import CheckpointError, UsageError
from orthocli.network.banks import FilterBank, banks_from_model, masked_forward, needs_mask
from orthocli.network.graph import ModelGraph
from orthocli.network.zero_steps import keeps_zero


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
            if not keeps_zero(node, modules):
                break
        points[bank.name] = point
    return points


class ChannelMasks:
    """Multiplies banks' channels by a 0/1 mask at their hook points, for the banks whose channels
    zeroing alone does not silence (`needs_mask`).

    `masks` (bank name -> tensor shaped (1, C, 1, ...), ones) change in place: `set(record)` zeroes
    a drop record's filters, `clear()` sets every mask to one. `install(names)` adds the hooks of
    those banks that need one, `remove()` takes them away again."""

    def __init__(self, graph: ModelGraph, banks: list[FilterBank]) -> None:
        self.model = model = graph.model
        self.points = hook_points(graph, banks)
        self.needs = {bank.name: needs_mask(graph, bank) for bank in banks}
        self.follow = {bank.name: list(bank.follow) for bank in banks}
        self.masks: dict[str, torch.Tensor] = {}
        for bank in banks:
            weight = model.get_parameter(bank.key)
            channels = weight.shape[1] * bank.groups if bank.transposed else weight.shape[0]
            self.masks[bank.name] = torch.ones(1, channels, *[1] * (weight.dim() - 2), device=weight.device)
        self._handles: list = []

    @property
    def hooked(self) -> bool:
        """Whether any hook is installed."""
        return bool(self._handles)

    def with_follow(self, names: Iterable[str]) -> list[str]:
        """The banks named and the depthwise convs that follow them (masked at the same indices)."""
        return list(dict.fromkeys(n for name in names for n in (name, *self.follow.get(name, ()))))

    def check(self, names: Iterable[str]) -> None:
        """UsageError unless every bank named (and its depthwise follower) can be masked."""
        for name in self.with_follow(names):
            if self.needs[name] and self.points[name] is None:
                raise UsageError(
                    f"layer '{name}': its dropped filters cannot be masked by a forward hook (its channels pass"
                    " a module called more than once, then a step that maps zero to non-zero, such as a sigmoid);"
                    " exclude the layer, or give that step a module of its own"
                )

    def install(self, names: Iterable[str]) -> None:
        """Hook the masks of these banks and their followers, where zeroing is not enough (the
        other banks' channels need no hook); masks hold ones until `set`."""
        names = self.with_follow(names)
        self.check(names)
        self.remove()
        by_module: dict[str, list[torch.Tensor]] = {}
        for name in names:
            if self.needs[name]:
                by_module.setdefault(self.points[name], []).append(self.masks[name])
        for point, masks in by_module.items():
            self._handles.append(self.model.get_submodule(point).register_forward_hook(_multiply(masks)))

    def set(self, record: dict) -> None:
        """Masks of a drop record: 0 for its dropped filters (and their depthwise followers), 1 elsewhere."""
        masks_from_record(record, self.masks)

    def clear(self) -> None:
        for m in self.masks.values():
            m.fill_(1)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def masks_from_record(record: dict, masks: dict[str, torch.Tensor]) -> None:
    """Set mask tensors to 0 for dropped filters, 1 elsewhere. A depthwise conv that follows a
    layer (`FilterBank.follow`) is masked at the same indices."""
    for m in masks.values():
        m.fill_(1)
    for name, layer in record["layers"].items():
        for target in (name, *layer.get("follow", ())):
            m = masks.get(target)
            if m is not None:
                m.index_fill_(1, torch.as_tensor(layer["dropped"], dtype=torch.long).to(m.device), 0)


def _multiply(masks: list[torch.Tensor]):
    def hook(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        for m in masks:
            output = output * m.to(device=output.device, dtype=output.dtype)
        return output

    return hook


def masked_model(model: nn.Module | ModelGraph, dropped: dict[str, torch.Tensor]) -> nn.Module:
    """The masked sub-network as a module of its own (what `export` writes for a pruned checkpoint):
    the model (or its ModelGraph) with the dropped filters' channels, {layer: indices}, multiplied by
    0 where they are handed on. The model itself is not changed."""
    graph = model if isinstance(model, ModelGraph) else ModelGraph.trace(model)
    banks = banks_from_model(graph)
    gm, masks = masked_forward(graph, banks)
    unknown = sorted(set(dropped) - set(masks))
    if unknown:
        raise CheckpointError(f"the drop record names layers the model does not have: {', '.join(unknown)}")
    follow = {b.name: b.follow for b in banks}
    masks_from_record({"layers": {n: {"dropped": i, "follow": follow[n]} for n, i in dropped.items()}}, masks)
    return gm.eval()
