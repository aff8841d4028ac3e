"""Physical removal of dropped filters: a smaller model that computes what the masked one did.

Found on the model's graph, reusing the filter banks of `banks.py`: a bank already holds every
tensor indexed by a conv's filters (its weight and bias, a BatchNorm, a per-channel PReLU, a
depthwise conv that reads it one to one) and the node after which its channels are handed on. From
that node the channels are followed forward to the tensors that read them (`channel_readers.py`,
the walk re-introduction uses too):

- a conv (groups=1): its input channels are removed;
- a BatchNorm, an activation, pooling, dropout: removed per channel, and followed further;
- a depthwise conv that is the only reader (`FilterBank.follow`): its filter, bias and BatchNorm
  for the channel go with the channel, and its output is followed further ("depthwise");
- `torch.cat` along the channels: the layer's channels are a block of the result, at the offset
  of the tensors before it (shapes from one run of an example input) ("concatenation");
- a reduction over the spatial dims (`x.mean((2, 3))`, sum, amax, amin): the channels stay, in
  a tensor of fewer dims ("spatial reduction");
- a flatten (torch.flatten / nn.Flatten / view or reshape to (N, -1)), or a reduction to (N, C),
  then a Linear: each removed channel removes its block of in_features, in order;
- a grouped conv other than a following depthwise one: refused (`CheckpointError`): removing an
  input channel there changes the groups, and the matching channels would have to go too.
- a conv called more than once (shared weights): refused; `prune` and `train` never drop from one.

Anything else that combines the channels with another tensor (a residual add) or that is the
model's output cannot lose channels on one side only. Such a layer is *kept at full width*: its
dropped filters stay in the model with zero weight, bias and BatchNorm affine (what
`subnet.apply_drops` writes), and the report gives the reason. In ResNet-20 the inner conv of each
block (`layerX.Y.conv1`) is compacted; the stem and each block's second conv feed a residual add
and keep their width.

A compact model is rebuilt from its architecture dict plus `"widths"`: {conv name: filters kept}
(see `apply_widths`, called by `checkpoints.model.rebuild`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

import orthocli.network.fan_out as fanout
from orthocli.errors import CheckpointError, first_line, render_options
from orthocli.network.banks import banks_from_model, needs_mask, zero_dropped
from orthocli.network.channel_readers import PATTERNS, Blocked, Reader, module_width, readers, shape_width
from orthocli.network.graph import ModelGraph, TraceError
from orthocli.network.layers import filter_count


@dataclass
class CompactReport:
    # name -> {"filters", "kept", "patterns"}: compacted; patterns lists what its channels went through
    layers: dict[str, dict] = field(default_factory=dict)
    kept_width: dict[str, str] = field(default_factory=dict)  # name -> why it keeps its width

    @property
    def widths(self) -> dict[str, int]:
        return {name: info["kept"] for name, info in self.layers.items()}

    def to_json(self) -> dict:
        return {
            "layers": [{"name": n, **info} for n, info in self.layers.items()],
            "kept_width": [{"name": n, "reason": r} for n, r in self.kept_width.items()],
        }


class _KeepWidth(Exception):
    """The layer's channels reach something that cannot lose channels on one side only."""


def _consumers(graph: ModelGraph, bank, banks: dict, shaped: bool) -> tuple[list[Reader], set[str]]:
    """Every module whose weights read the bank's channels, and the patterns passed on the way;
    raises _KeepWidth (a grouped reader included: removing its input channels would change its groups)."""
    try:
        found, patterns = readers(graph, bank, banks, shape_width if shaped else None, couple=True)
    except Blocked as e:
        reason = render_options(str(e), _flag)
        if e.kind == "widths" and not shaped:
            reason += " (give --input-shape)"
        raise _KeepWidth(reason) from None
    for r in found:
        if r.kind == "conv_in" and r.groups > 1:
            raise _KeepWidth(
                f"its channels reach the grouped conv '{r.target}' (groups={r.groups}), whose groups would change if it"
                " lost input channels; exclude the layer from dropping (--exclude) if it should keep every filter"
            )
    return found, patterns


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


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


def compact(
    model: nn.Module | ModelGraph, dropped: dict[str, torch.Tensor], example: torch.Tensor | None = None
) -> CompactReport:
    """Remove the `dropped` filters (conv name -> filter indices) from the model, in place, with the
    channels that read them. Layers that must keep their width get their dropped filters zeroed
    instead. `example`: an input batch, run once to learn the widths a concatenation joins (without
    it a layer whose channels are concatenated keeps its width). Raises CheckpointError for what
    cannot be done (see the module docstring)."""
    try:
        graph = model if isinstance(model, ModelGraph) else ModelGraph.trace(model)
    except TraceError as e:  # data-dependent control flow and the like
        raise CheckpointError(f"--compact: cannot trace the model with torch.fx ({e})") from None
    model, gm = graph.model, graph.gm
    banks = {b.name: b for b in banks_from_model(graph)}
    if example is not None:
        from torch.fx.passes.shape_prop import ShapeProp

        modes = [(m, m.training) for m in model.modules()]
        model.eval()  # a run in training mode would move BatchNorm's running statistics
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(example)
        except Exception as e:  # the example does not fit the model
            raise CheckpointError(f"--compact: cannot trace the model with torch.fx ({first_line(e)})") from None
        finally:
            for m, mode in modes:
                m.training = mode
    modules, calls = graph.modules, graph.calls
    report = CompactReport()
    keeps: dict[str, torch.Tensor] = {}
    out_gone: dict[str, set[int]] = {}  # conv -> its output channels removed (its drops, or a gated layer's)
    removed: dict[tuple[str, str], tuple[int, set[int]]] = {}  # (consumer, kind) -> (width read, channels gone)
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
        if calls[name] > 1:
            raise CheckpointError(
                f"--compact: layer '{name}' is called {calls[name]} times in forward() (shared weights); its filters "
                "cannot be removed at one call only. Prune again (prune and train no longer drop from a shared conv), "
                "or export without --compact"
            )
        if idx.numel() == filters:
            raise CheckpointError(
                f"--compact: the drop record drops all {filters} filters of layer '{name}'; nothing would be left"
            )
        try:
            if conv.groups > 1:
                raise _KeepWidth(
                    f"a grouped conv (groups={conv.groups}): removing some of its filters would leave its groups"
                    " uneven; exclude it from dropping (--exclude) if it should keep every filter"
                )
            consumers, patterns = _consumers(graph, bank, banks, example is not None)
        except _KeepWidth as why:
            report.kept_width[name] = str(why)
            _zero_dropped(model, bank, idx)
            if needs_mask(graph, bank):  # the zeros do not silence it: what reads it must not read it
                _zero_readers(graph, bank, banks, idx)
            continue
        for c in consumers:
            if c.kind == "gate":  # the gate's conv loses the same output channels (`_gate`)
                out_gone.setdefault(c.target, set()).update((idx + c.offset).tolist())
                continue
            width, gone = removed.setdefault((c.target, c.kind), (c.width, set()))
            if width != c.width:
                raise CheckpointError(f"--compact: '{c.target}' reads the channels of '{name}' at two different widths")
            gone.update((idx + c.offset).tolist())
        out_gone.setdefault(name, set()).update(idx.tolist())
        report.layers[name] = {
            "filters": filters,
            "kept": filters - len(idx),
            "patterns": [p for p in PATTERNS if p in patterns],
        }
    for name, gone in out_gone.items():
        conv = modules[name]
        filters = filter_count(conv.weight, conv.groups, conv.transposed)
        if len(gone) == filters:
            raise CheckpointError(f"--compact: the drop record removes all {filters} output channels of layer '{name}'")
        keeps[name] = torch.tensor([i for i in range(filters) if i not in gone], dtype=torch.long)
    with torch.no_grad():
        for name, keep in keeps.items():
            for ch in banks[name].channels:
                if ch.role.startswith("rd_"):
                    continue  # a BatchNorm reading the channels further on: one of the readers below
                _replace(model, ch.key, ch.dim, keep)
                _sync_sizes(modules[ch.key.rpartition(".")[0]])
            for dw in banks[name].follow:
                mod = modules[dw]
                mod.groups = mod.in_channels = mod.out_channels = mod.weight.shape[0]
        for (target, kind), (width, gone) in removed.items():
            mod = modules[target]
            keep = torch.tensor([i for i in range(width) if i not in gone], dtype=torch.long)
            if kind == "conv_in":
                _replace(model, f"{target}.weight", 0 if mod.transposed else 1, keep)
            elif kind == "bn":
                for attr in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(mod, attr, None) is not None:
                        _replace(model, f"{target}.{attr}", 0, keep)
            elif kind == "prelu":
                _replace(model, f"{target}.weight", 0, keep)
            elif kind == "linear_flat":
                features = mod.weight.shape[1]
                if features % width:
                    raise CheckpointError(
                        f"--compact: the Linear '{target}' has {features} inputs, not a multiple of the {width} "
                        "channels it reads"
                    )
                block = features // width
                _replace(model, f"{target}.weight", 1, (keep[:, None] * block + torch.arange(block)).flatten())
            _sync_sizes(mod)
    return report


def _zero_dropped(model: nn.Module, bank, idx: torch.Tensor) -> None:
    """What `method.subnet.apply_drops` does: zero weight, bias and BatchNorm affine of dropped filters
    (a BatchNorm reading them after a concatenation too, at their offset there)."""
    tensors = dict(model.named_parameters())
    for ch in bank.channels:
        if ch.key in tensors:
            zero_dropped(tensors[ch.key], ch.role, ch.dim, idx + ch.offset)


def _zero_readers(graph: ModelGraph, bank, banks: dict, idx: torch.Tensor) -> None:
    """Zero the weights that read a kept-width layer's dropped channels, where zeroed filters do
    not silence them (a sigmoid gate after the conv gives 0.5, which a mask made 0 in the
    sub-network): the compact model holds no mask. CheckpointError where they cannot be found."""
    try:
        found, _ = readers(graph, bank, banks, module_width(graph))
    except Blocked as e:
        raise CheckpointError(
            f"--compact: layer '{bank.name}' keeps its width and its dropped filters are silenced by a mask, which a"
            f" compact model cannot hold, and what reads them cannot be found ({render_options(str(e), _flag)});"
            " export without --compact"
        ) from None
    with torch.no_grad():
        for r in found:
            if r.kind in ("conv_in", "linear_flat"):
                mod = graph.modules[r.target]
                for entry in fanout.reader_entries(mod, f"{r.target}.weight", r, idx) or []:
                    fanout.zero(mod.weight.data, entry)


def compacted(
    model: nn.Module | ModelGraph, dropped: dict[str, torch.Tensor], example: torch.Tensor | None = None
) -> tuple[nn.Module, CompactReport]:
    """A compact copy of the model; the original is left as it is (a graph given is copied, not
    traced again)."""
    try:
        graph = model if isinstance(model, ModelGraph) else ModelGraph.trace(model)
    except TraceError as e:
        raise CheckpointError(f"--compact: cannot trace the model with torch.fx ({e})") from None
    small = graph.copy()
    return small.model, compact(small, dropped, example)


def apply_widths(model: nn.Module, widths: dict[str, int], example: torch.Tensor | None = None) -> nn.Module:
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
    report = compact(model, dropped, example)
    if report.kept_width:
        name, why = next(iter(report.kept_width.items()))
        raise CheckpointError(f"cannot rebuild the compact model: layer '{name}' cannot be narrowed ({why})")
    return model


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["CompactReport", "apply_widths", "compact", "compacted", "param_count"]
