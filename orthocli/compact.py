"""Physical removal of dropped filters: a smaller model that computes what the masked one did.

Found with torch.fx, reusing the filter banks of `banks.py`: a bank already holds every tensor
indexed by a conv's filters (its weight and bias, a BatchNorm, a per-channel PReLU) and the node
after which its channels are handed on. From that node the channels are followed forward to the
tensors that read them:

- a conv (groups=1): its input channels are removed;
- a BatchNorm, an activation, pooling, dropout: removed per channel, and followed further;
- a flatten (torch.flatten / nn.Flatten / view or reshape to (N, -1)) then a Linear: each removed
  channel removes its block of in_features (in_features / channels of them, in order);
- a grouped or depthwise conv: refused (`CheckpointError`): removing an input channel there
  changes the groups, and the matching channels of that conv would have to go too.

Anything else that combines the channels with another tensor (a residual add, a concatenation)
or that is the model's output cannot lose channels on one side only. Such a layer is *kept at
full width*: its dropped filters stay in the model with zero weight, bias and BatchNorm affine
(what `subnet.apply_drops` writes), and the result lists it with the reason. In ResNet-20 the
inner conv of each block (`layerX.Y.conv1`) is compacted; the stem and each block's second conv
feed a residual add and keep their width.

A compact model is rebuilt from its architecture dict plus `"widths"`: {conv name: filters kept}
(see `apply_widths`, called by `models.build_model`).
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from orthocli.banks import PER_CHANNEL_FUNCTIONS, PER_CHANNEL_METHODS, PER_CHANNEL_MODULES, banks_from_model
from orthocli.errors import CheckpointError, first_line
from orthocli.layers import filter_count

_ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div}
_SHAPE_READS = {"size", "dim"}  # methods that read the batch size and the like, not the values


@dataclass
class CompactReport:
    layers: dict[str, dict] = field(default_factory=dict)  # name -> {"filters", "kept"}: compacted
    kept_width: dict[str, str] = field(default_factory=dict)  # name -> why it keeps its width

    @property
    def widths(self) -> dict[str, int]:
        return {name: info["kept"] for name, info in self.layers.items()}

    def to_json(self) -> dict:
        return {
            "layers": [{"name": n, **info} for n, info in self.layers.items()],
            "kept_width": [{"name": n, "reason": r} for n, r in self.kept_width.items()],
        }


@dataclass
class _Consumer:
    kind: str  # conv_in | bn | prelu | linear_flat
    target: str  # module path


class _KeepWidth(Exception):
    """The layer's channels reach something that cannot lose channels on one side only."""


def _flatten_start(node: fx.Node, modules: dict) -> int | None:
    """The start dim if `node` flattens everything after it, else None."""
    if node.op == "call_module" and isinstance(modules.get(node.target), nn.Flatten):
        m = modules[node.target]
        return m.start_dim if m.end_dim == -1 else None
    if (node.op == "call_function" and node.target is torch.flatten) or (
        node.op == "call_method" and node.target == "flatten"
    ):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
        return start if end == -1 else None
    if node.op == "call_method" and node.target in ("view", "reshape") and len(node.args) >= 2:
        shape = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
        if len(shape) == 2 and shape[1] == -1:
            return 1
    return None


def _describe(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"'{node.name}' ({node.op} {target})"


def _consumers(start: fx.Node, modules: dict, layer: str) -> list[_Consumer]:
    """Every module whose weights read the channels of `start`; raises _KeepWidth or refuses."""
    found: list[_Consumer] = []
    stack = [(user, start, False) for user in start.users]
    seen = set()
    while stack:
        node, src, flat = stack.pop()
        if (node, src) in seen:
            continue
        seen.add((node, src))
        if node.op == "output":
            raise _KeepWidth(f"its channels are an output of the model ({_describe(src)})")
        if node.op == "call_method" and node.target in _SHAPE_READS:
            continue
        combines = node.op == "call_function" and node.target in _ELEMENTWISE | {torch.cat, torch.stack, torch.concat}
        if combines and not (node.target in _ELEMENTWISE and sum(isinstance(a, fx.Node) for a in node.args) == 1):
            raise _KeepWidth(f"its channels meet another tensor at '{node.name}' (a residual add or concatenation)")
        if not combines and (not node.args or node.args[0] is not src):
            raise _KeepWidth(f"its channels reach {_describe(node)}, which orthocli cannot follow")
        mod = modules.get(node.target) if node.op == "call_module" else None
        follow = True
        if isinstance(mod, nn.modules.conv._ConvNd):
            if flat:
                raise _KeepWidth(f"its flattened channels reach the conv {_describe(node)}")
            if mod.groups > 1:
                raise CheckpointError(
                    f"--compact: layer '{layer}' feeds the grouped conv '{node.target}' (groups={mod.groups}); removing its "
                    "filters would change that conv's groups. Exclude the layer when pruning, or export without --compact"
                )
            found.append(_Consumer("conv_in", node.target))
            follow = False
        elif isinstance(mod, nn.Linear):
            if not flat:
                raise _KeepWidth(f"its channels reach the Linear {_describe(node)} without a flatten")
            found.append(_Consumer("linear_flat", node.target))
            follow = False
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if flat:
                raise _KeepWidth(f"its flattened channels reach the BatchNorm {_describe(node)}")
            found.append(_Consumer("bn", node.target))
        elif isinstance(mod, nn.PReLU):
            if mod.num_parameters > 1:
                if flat:
                    raise _KeepWidth(f"its flattened channels reach the PReLU {_describe(node)}")
                found.append(_Consumer("prelu", node.target))
        elif _flatten_start(node, modules) is not None:
            if flat or _flatten_start(node, modules) != 1:
                raise _KeepWidth(f"its channels are reshaped at {_describe(node)}")
            flat = True
        elif (
            isinstance(mod, PER_CHANNEL_MODULES)
            or node.op == "call_function"
            and node.target in PER_CHANNEL_FUNCTIONS
            or node.op == "call_method"
            and node.target in PER_CHANNEL_METHODS
        ):
            pass
        elif combines:
            pass  # x * 2, x + 1: element-wise with a constant
        else:
            raise _KeepWidth(f"its channels reach {_describe(node)}, which orthocli cannot follow")
        if follow:
            stack.extend((user, node, flat) for user in node.users)
    return found


def _replace(model: nn.Module, key: str, dim: int, keep: torch.Tensor) -> torch.Tensor:
    """Keep only the `keep` slices of the parameter or buffer `key` along `dim`; returns it."""
    path, _, attr = key.rpartition(".")
    mod = model.get_submodule(path)
    old = getattr(mod, attr)
    new = old.detach().index_select(dim, keep.to(old.device)).clone()
    if isinstance(old, nn.Parameter):
        setattr(mod, attr, nn.Parameter(new, requires_grad=old.requires_grad))
    else:
        setattr(mod, attr, new)
    return new


def _sync_sizes(mod: nn.Module) -> None:
    """Make a module's size attributes agree with its (sliced) tensors."""
    if isinstance(mod, nn.modules.conv._ConvNd):
        w = mod.weight
        if mod.transposed:
            mod.in_channels, mod.out_channels = w.shape[0], w.shape[1] * mod.groups
        else:
            mod.out_channels, mod.in_channels = w.shape[0], w.shape[1] * mod.groups
    elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
        ref = mod.weight if mod.weight is not None else mod.running_mean
        mod.num_features = ref.shape[0]
    elif isinstance(mod, nn.Linear):
        mod.in_features = mod.weight.shape[1]
    elif isinstance(mod, nn.PReLU):
        mod.num_parameters = mod.weight.numel()


def compact(model: nn.Module, dropped: dict[str, torch.Tensor]) -> CompactReport:
    """Remove the `dropped` filters (conv name -> filter indices) from `model`, in place, with the
    channels that read them. Layers that must keep their width get their dropped filters zeroed
    instead. Raises CheckpointError for what cannot be done (see the module docstring)."""
    try:
        gm = fx.symbolic_trace(model)
        banks = {b.name: b for b in banks_from_model(model)}
    except Exception as e:  # data-dependent control flow and the like
        raise CheckpointError(f"--compact: cannot trace the model with torch.fx ({first_line(e)})") from None
    nodes = {n.name: n for n in gm.graph.nodes}
    modules = dict(model.named_modules())
    report = CompactReport()
    plans = []
    for name, idx in dropped.items():
        bank = banks.get(name)
        if bank is None:
            raise CheckpointError(f"--compact: the drop record names layer '{name}', which the model does not have")
        conv = modules[name]
        filters = filter_count(conv.weight, conv.groups, conv.transposed)
        idx = torch.as_tensor(idx, dtype=torch.long).unique()
        if idx.numel() == 0:
            continue
        if int(idx.max()) >= filters or int(idx.min()) < 0:
            raise CheckpointError(
                f"--compact: layer '{name}' has {filters} filters; the drop record names filter {int(idx.max())}"
            )
        if conv.groups > 1:
            raise CheckpointError(
                f"--compact: layer '{name}' is a grouped conv (groups={conv.groups}); removing some of its filters would "
                "unbalance its groups. Exclude it when pruning, or export without --compact"
            )
        if idx.numel() == filters:
            raise CheckpointError(
                f"--compact: the drop record drops all {filters} filters of layer '{name}'; nothing would be left"
            )
        keep = torch.ones(filters, dtype=torch.bool)
        keep[idx] = False
        keep = keep.nonzero().flatten()
        try:
            consumers = _consumers(nodes[bank.mask_node], modules, name)
        except _KeepWidth as why:
            report.kept_width[name] = str(why)
            _zero_dropped(model, bank, idx)
            continue
        plans.append((name, bank, filters, keep, consumers))
    with torch.no_grad():
        for name, bank, filters, keep, consumers in plans:
            for ch in bank.channels:
                _replace(model, ch.key, ch.dim, keep)
            for c in consumers:
                mod = modules[c.target]
                if c.kind == "conv_in":
                    _replace(model, f"{c.target}.weight", 0 if mod.transposed else 1, keep)
                elif c.kind == "bn":
                    for attr in ("weight", "bias", "running_mean", "running_var"):
                        if getattr(mod, attr, None) is not None:
                            _replace(model, f"{c.target}.{attr}", 0, keep)
                elif c.kind == "prelu":
                    _replace(model, f"{c.target}.weight", 0, keep)
                elif c.kind == "linear_flat":
                    features = mod.weight.shape[1]
                    if features % filters:
                        raise CheckpointError(
                            f"--compact: the Linear '{c.target}' after layer '{name}' has {features} inputs, not a multiple "
                            f"of the layer's {filters} channels"
                        )
                    block = features // filters
                    cols = (keep[:, None] * block + torch.arange(block)).flatten()
                    _replace(model, f"{c.target}.weight", 1, cols)
                _sync_sizes(mod)
            _sync_sizes(modules[name])
            for ch in bank.channels:
                _sync_sizes(modules[ch.key.rpartition(".")[0]])
            report.layers[name] = {"filters": filters, "kept": len(keep)}
    return report


def _zero_dropped(model: nn.Module, bank, idx: torch.Tensor) -> None:
    """What `subnet.apply_drops` does: zero weight, bias and BatchNorm affine of dropped filters."""
    from orthocli.subnet import DROPPED_VALUE

    tensors = dict(model.named_parameters())
    with torch.no_grad():
        for ch in bank.channels:
            if ch.role in DROPPED_VALUE and ch.key in tensors:
                tensors[ch.key].index_fill_(ch.dim, idx.to(tensors[ch.key].device), DROPPED_VALUE[ch.role])


def compacted(model: nn.Module, dropped: dict[str, torch.Tensor]) -> tuple[nn.Module, CompactReport]:
    """A compact copy of `model`; the original is left as it is."""
    small = copy.deepcopy(model)
    return small, compact(small, dropped)


def apply_widths(model: nn.Module, widths: dict[str, int]) -> nn.Module:
    """Shrink a freshly built model to recorded widths (conv name -> filters kept), in place, so a
    compact state dict loads into it. Which filters go does not matter here: values come from the
    state dict; the shapes are the same as those `compact` produced."""
    modules = dict(model.named_modules())
    dropped = {}
    for name, kept in widths.items():
        conv = modules.get(name)
        if not isinstance(conv, nn.modules.conv._ConvNd):
            raise CheckpointError(f"the architecture's widths name '{name}', which is not a conv layer of the model")
        filters = filter_count(conv.weight, conv.groups, conv.transposed)
        if not 0 < int(kept) <= filters:
            raise CheckpointError(f"the architecture's widths give layer '{name}' {kept} filters; it has {filters}")
        dropped[name] = torch.arange(int(kept), filters)
    report = compact(model, dropped)
    if report.kept_width:
        name, why = next(iter(report.kept_width.items()))
        raise CheckpointError(f"cannot rebuild the compact model: layer '{name}' cannot be narrowed ({why})")
    return model


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["CompactReport", "apply_widths", "compact", "compacted", "param_count"]
