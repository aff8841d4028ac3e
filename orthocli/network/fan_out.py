"""What reads a dropped filter's channel, found when it is dropped, so that its re-introduction can
leave the network's output as it was (`reinit_fan_out="zero"`, the default).

At re-introduction a filter gets new values; if the layers reading its channel kept their weights
for it (the paper's way, "keep"), the network's output would jump. With "zero" those weights are
zeroed, and the output at that moment is the sub-network's: the next layers then learn to use the
new filter. Which weights those are comes from the walk of `channel_readers.py` on the model's graph:

- a conv's input channel, grouped and depthwise convs included (each reads the channel with the
  filters of its group), through BatchNorm, activations, pooling, a following depthwise conv,
  concatenations and spatial reductions; a Linear's block of features after a flatten;
- through a residual add the channel is combined with the skip path's, and zeroing what reads the
  sum would silence the skip path too: there the re-introduced filter's BatchNorm scale and shift
  start at 0 instead ("silence"), so its branch adds nothing until they learn (where a step after
  the BatchNorm maps zero to non-zero, or there is no BatchNorm, this cannot be done);
- where the walk cannot follow the channel, or there is no graph (a bare state dict), the readers
  are unknown; the record says why and what the user can do (`note`), and the re-introduction
  report says the output was not kept.

A plan is plain data (saved in drop records): {"fan_out": [{"key", "dim", "index", "rows"?}],
"silence": [{"key", "dim", "index"}], "note": str | None}. An entry zeroes `index` along `dim` of
the tensor `key`; with `rows`, only those rows (dim 0) of it, for a grouped reader.
"""

from __future__ import annotations

import torch
from torch import nn

from orthocli.network.channel_readers import Blocked, module_width, readers
from orthocli.network.filter_bank import FilterBank
from orthocli.network.graph import ModelGraph
from orthocli.network.zero_steps import keeps_zero

# Notes name options as `{field}` (errors.render_options): `subnet.reintroduce` renders them as the
# library's parameters, `orthocli reinit` as its flags. Each says what the user can do.
UNKNOWN_GRAPH = (
    "the model's graph is unknown (a bare state dict): the layers reading these channels are not known; give the"
    " model (a module, or a checkpoint with its model) to keep the output at re-introduction"
)
_REMEDY = (
    "; the output changes at re-introduction (training goes on from there); to keep it, exclude the layer from"
    " dropping ({exclude})"
)
_NO_SILENCE = (
    "; and no BatchNorm right after the conv can start the branch at zero: the output changes at re-introduction"
    " (training goes on from there). To keep it, exclude the layer from dropping ({exclude}), or put a BatchNorm"
    " after the conv"
)


def plan(graph: ModelGraph | None, bank: FilterBank, banks: dict[str, FilterBank], idx: torch.Tensor) -> dict:
    """The fan-out plan of the filters `idx` of `bank` (see the module docstring)."""
    if graph is None:
        return {"fan_out": [], "silence": [], "note": UNKNOWN_GRAPH}
    try:
        found, _ = readers(graph, bank, banks, module_width(graph))
    except Blocked as e:
        if e.kind != "combined":
            note = str(e) if "{exclude}" in str(e) else f"{e}{_REMEDY}"
            return {"fan_out": [], "silence": [], "note": note}
        silence = _silence(graph, bank, idx)
        note = None if silence else f"{e}{_NO_SILENCE}"
        return {"fan_out": [], "silence": silence, "note": note}
    entries, notes = [], []
    for r in found:
        if r.kind not in ("conv_in", "linear_flat"):
            continue  # per-channel tensors (a BatchNorm after a concatenation) mix nothing
        entry = reader_entries(graph.modules[r.target], f"{r.target}.weight", r, idx)
        if entry is None:
            notes.append(
                f"its channels reach the grouped transposed conv '{r.target}', whose weights are not followed; exclude"
                " the layer from dropping ({exclude}) to keep the output at re-introduction"
            )
        else:
            entries.extend(entry)
    return {"fan_out": entries, "silence": [], "note": "; ".join(notes) or None}


def reader_entries(mod: nn.Module, key: str, r, idx: torch.Tensor) -> list[dict] | None:
    """The entries that zero what the reader `r` (of `mod`, weight `key`) reads of the channels `idx`;
    None for a grouped transposed conv."""
    channels = idx.to(torch.long) + r.offset
    weight = mod.weight
    if r.kind == "linear_flat":
        block = weight.shape[1] // r.width
        return [{"key": key, "dim": 1, "index": (channels[:, None] * block + torch.arange(block)).flatten()}]
    if mod.transposed:  # (in, out / groups, *k): an input channel is a row
        return None if mod.groups > 1 else [{"key": key, "dim": 0, "index": channels}]
    if mod.groups == 1:
        return [{"key": key, "dim": 1, "index": channels}]
    per_group_in, per_group_out = weight.shape[1], weight.shape[0] // mod.groups
    entries = []
    for g in sorted(set((channels // per_group_in).tolist())):
        local = channels[channels // per_group_in == g] % per_group_in
        rows = torch.arange(g * per_group_out, (g + 1) * per_group_out)
        entries.append({"key": key, "dim": 1, "index": local, "rows": rows})
    return entries


def _silence(graph: ModelGraph, bank: FilterBank, idx: torch.Tensor) -> list[dict]:
    """The BatchNorm scale and shift to start at zero, where the steps after that BatchNorm keep a
    zero channel zero up to the residual add; else nothing. Nothing either where the channel passes
    tensors that re-introduction restores on its way (a following depthwise conv and its
    BatchNorm, a BatchNorm after a concatenation: they map the zero to non-zero once restored, as
    EfficientNet's expand conv -> depthwise conv -> BatchNorm -> squeeze-excite would)."""
    affine = [ch for ch in bank.channels if ch.role in ("bn_weight", "bn_bias")]
    if len(affine) != 2 or bank.follow or any(ch.role.startswith("rd_") for ch in bank.channels):
        return []
    bn = affine[0].key.rpartition(".")[0]
    node = next(n for n in graph.nodes if n.op == "call_module" and n.target == bank.name)
    seen_bn = False
    while node.name != bank.mask_node:
        node = next(iter(node.users))
        if seen_bn and not keeps_zero(node, graph.modules):
            return []
        seen_bn = seen_bn or (node.op == "call_module" and node.target == bn)
    return [{"key": ch.key, "dim": ch.dim, "index": idx.to(torch.long)} for ch in affine]


def entries(layer: dict) -> list[dict]:
    """A drop record layer's fan-out entries (a single dict in records written before they were lists)."""
    found = layer.get("fan_out")
    if found is None:
        return []
    return [found] if isinstance(found, dict) else list(found)


def zero(t: torch.Tensor, entry: dict) -> None:
    """Zero the entry's positions of `t` (a weight, or an optimizer state tensor of its shape), in place."""
    index = entry["index"].to(t.device)
    rows = entry.get("rows")
    if rows is None:
        t.index_fill_(entry["dim"], index, 0.0)
    else:
        t[rows.to(t.device)[:, None], index[None, :]] = 0.0
