"""Filter banks: for each conv, every tensor indexed by its output channels, and the point in the
forward pass after which those channels are handed on (where a dropped filter is masked).

Found from the model's graph (`graph.ModelGraph`, traced once): from each conv, follow the chain of per-channel
operations (BatchNorm, element-wise activations, pooling, dropout) while the value has one user.
The chain ends where channels are mixed (another conv, a Linear) or combined (a residual add):
the mask goes there, so a dropped filter contributes nothing, whatever its bias, a BatchNorm
(BN(0) != 0) or an activation with f(0) != 0 (sigmoid) would add. For a bare state dict (no
model) a bank is the conv weight and its bias only.
"""

from __future__ import annotations

import contextlib
import operator

import torch
from torch import nn

from orthocli.network.channel_readers import Blocked, module_width, readers
from orthocli.network.filter_bank import Channel, FilterBank
from orthocli.network.graph import ModelGraph
from orthocli.network.layers import ConvLayer, filter_count
from orthocli.network.zero_steps import keeps_zero, per_channel

# What a dropped filter's tensors hold while it is dropped (subnet.py) and after compaction
DROPPED_VALUE = {"conv_weight": 0.0, "conv_bias": 0.0, "bn_weight": 0.0, "bn_bias": 0.0}
DROPPED_VALUE.update({f"dw_{role}": value for role, value in DROPPED_VALUE.items()})  # a following depthwise conv
DROPPED_VALUE.update({"rd_bn_weight": 0.0, "rd_bn_bias": 0.0})  # a BatchNorm reading the channel (Channel.offset)


def zero_dropped(tensor: torch.Tensor, role: str, dim: int, idx: torch.Tensor) -> bool:
    """Give the dropped filters' entries `idx` (along `dim`) of `tensor`, a channel of role `role`,
    the value a dropped filter holds (`DROPPED_VALUE`), in place: the one place a filter is zeroed
    (drops, the state a re-introduction restores, compaction's kept-width layers). False, and
    nothing changed, for a role a drop leaves as it is (BatchNorm statistics, others)."""
    if role not in DROPPED_VALUE:
        return False
    with torch.no_grad():
        tensor.index_fill_(dim, idx.to(tensor.device), DROPPED_VALUE[role])
    return True


def needs_mask(graph: ModelGraph, bank: FilterBank) -> bool:
    """Whether a dropped filter of `bank` can be non-zero at the mask point although its weight,
    bias and BatchNorm affine parameters are zero: a step from the conv to the mask point maps zero
    to non-zero."""
    node = next(n for n in graph.nodes if n.op == "call_module" and n.target == bank.name)
    while node.name != bank.mask_node:  # the walk of `banks_from_model`, replayed
        node = next(iter(node.users))
        if not keeps_zero(node, graph.modules):
            return True
    return False


def _conv_channels(prefix: str, conv: nn.Module) -> list[Channel]:
    chans = [Channel(f"{prefix}weight", 1 if conv.transposed else 0, "conv_weight")]
    if conv.bias is not None:
        chans.append(Channel(f"{prefix}bias", 0, "conv_bias"))
    return chans


def fixed_layers(graph: ModelGraph) -> dict[str, str]:
    """Conv layer name -> why it keeps every filter: the graph's reasons (output layers, shared
    convs: `ModelGraph.fixed_layers`), then the convs whose dropped filter could not be silent at
    every reader (`FilterBank.unsilenceable`). Computed once per graph."""
    if "fixed_layers" not in graph.cache:
        fixed = dict(graph.fixed_layers())
        for bank in banks_from_model(graph):
            if bank.unsilenceable and bank.name not in fixed:
                fixed[bank.name] = f"a dropped filter would not be silent: {bank.unsilenceable}"
        graph.cache["fixed_layers"] = fixed
    return graph.cache["fixed_layers"]


def banks_from_model(model: nn.Module | ModelGraph) -> list[FilterBank]:
    """One bank per conv, in graph order, from the model's graph (traced once per ModelGraph; a
    module is traced here). Raises TraceError on a model torch.fx cannot trace."""
    graph = model if isinstance(model, ModelGraph) else ModelGraph.trace(model)
    if "banks" not in graph.cache:
        graph.cache["banks"] = _banks(graph)
    return graph.cache["banks"]


def _banks(graph: ModelGraph) -> list[FilterBank]:
    modules = graph.modules
    banks = []
    for node in graph.conv_nodes():
        conv = modules[node.target]
        prefix = f"{node.target}."
        bank = FilterBank(
            node.target, f"{prefix}weight", conv.groups, bool(conv.transposed), _conv_channels(prefix, conv)
        )
        cur = node
        while len(cur.users) == 1:
            nxt = next(iter(cur.users))
            if not nxt.args or nxt.args[0] is not cur:
                break
            if nxt.op == "call_module":
                mod = modules[nxt.target]
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    p = f"{nxt.target}."
                    if mod.affine:
                        bank.channels += [Channel(p + "weight", 0, "bn_weight"), Channel(p + "bias", 0, "bn_bias")]
                    if mod.track_running_stats:
                        bank.channels += [
                            Channel(p + "running_mean", 0, "bn_mean"),
                            Channel(p + "running_var", 0, "bn_var"),
                        ]
                elif isinstance(mod, nn.PReLU):
                    if mod.weight.numel() > 1:
                        bank.channels.append(Channel(f"{nxt.target}.weight", 0, "other"))
                elif not per_channel(nxt, modules):
                    break
            elif nxt.op not in ("call_function", "call_method") or not per_channel(nxt, modules):
                break
            cur = nxt
        bank.mask_node = cur.name
        banks.append(bank)
    _link_depthwise(graph, banks)
    _readers_on_the_way(graph, banks)
    return banks


def _readers_on_the_way(graph: ModelGraph, banks: list[FilterBank]) -> None:
    """A dropped channel is zero where it is handed on (the mask point); past it, on the way to the
    convs and Linears that read it, every step must keep it zero. A BatchNorm there (DenseNet's,
    after each concatenation) maps zero to beta - gamma * mean / std: its scale and shift for the
    channel become the bank's too (roles "rd_*", at the channel's offset in what it reads), zeroed
    and frozen with the filter, restored on re-introduction. Any other step there that maps zero to
    non-zero, or a BatchNorm without affine parameters, makes the bank `unsilenceable`."""
    by_name = {b.name: b for b in banks}
    width = module_width(graph)
    for bank in banks:
        found, steps = [], []
        with contextlib.suppress(Blocked):  # what was found before the walk stopped still reads the channel
            readers(graph, bank, by_name, width, found=found, steps=steps)
        for r in found:
            mod = graph.modules[r.target]
            if r.kind != "bn":
                continue
            if not mod.affine:
                bank.unsilenceable = (
                    f"its channels reach the BatchNorm '{r.target}', which has no affine parameters and maps a zero"
                    " channel to non-zero"
                )
                continue
            prefix = f"{r.target}."
            roles = [("weight", "rd_bn_weight"), ("bias", "rd_bn_bias")]
            if mod.track_running_stats:
                roles += [("running_mean", "rd_bn_mean"), ("running_var", "rd_bn_var")]
            bank.channels += [Channel(prefix + attr, 0, role, r.offset) for attr, role in roles]
        for node in steps:
            if not keeps_zero(node, graph.modules):
                bank.unsilenceable = (
                    f"its channels pass '{node.name}' after they are handed on, which maps a zero channel to"
                    " non-zero where no mask can go"
                )


def is_depthwise(conv: nn.Module) -> bool:
    """One input and one output channel per group: channel i in, channel i out."""
    return (
        isinstance(conv, nn.modules.conv._ConvNd)
        and not conv.transposed
        and conv.groups > 1
        and conv.groups == conv.in_channels == conv.out_channels
    )


def _link_depthwise(graph: ModelGraph, banks: list[FilterBank]) -> None:
    """Attach to a bank the depthwise conv that is the only reader of its channels."""
    calls, modules = graph.calls, graph.modules
    by_name = {b.name: b for b in banks}
    nodes = {n.name: n for n in graph.nodes}
    for bank in banks:
        users = list(nodes[bank.mask_node].users)
        if len(users) != 1 or users[0].op != "call_module" or calls[bank.name] != 1:
            continue
        target = users[0].target
        dw = by_name.get(target)
        if (
            dw is None
            or not is_depthwise(modules[target])
            or calls[target] != 1
            or users[0].args[0] is not nodes[bank.mask_node]
        ):
            continue
        bank.follow.append(target)
        bank.channels += [Channel(ch.key, ch.dim, f"dw_{ch.role}") for ch in dw.channels]


def banks_from_layers(layers: list[ConvLayer], state_dict: dict[str, torch.Tensor]) -> list[FilterBank]:
    """Without a model: each conv weight, and `<name>.bias` when it has one entry per filter."""
    banks = []
    for layer in layers:
        chans = [Channel(layer.key, 1 if layer.transposed else 0, "conv_weight")]
        bias = state_dict.get(f"{layer.name}.bias")
        if bias is not None and bias.dim() == 1 and bias.shape[0] == layer.filters:
            chans.append(Channel(f"{layer.name}.bias", 0, "conv_bias"))
        banks.append(FilterBank(layer.name, layer.key, layer.groups, layer.transposed, chans))
    return banks


def masked_forward(model: nn.Module | ModelGraph, banks: list[FilterBank]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A traced copy of the model (sharing its parameters) that multiplies each bank's channels by
    a mask at the bank's mask point. Returns it and the mask tensors (1 = kept, 0 = dropped), keyed
    by bank name; edit those in place to change what is dropped."""
    graph = model if isinstance(model, ModelGraph) else ModelGraph.trace(model)
    model = graph.model
    gm = graph.copy_module()
    nodes = {n.name: n for n in gm.graph.nodes}
    masks: dict[str, torch.Tensor] = {}
    for i, bank in enumerate(banks):
        node = nodes[bank.mask_node]
        weight = model.get_parameter(bank.key)
        channels = filter_count(weight, bank.groups, bank.transposed)
        spatial = weight.dim() - 2
        if bank.name in masks:  # a conv called again (shared weights): every call reads the one mask
            attr = next(a for a, t in gm.named_buffers() if t is masks[bank.name])
        else:
            attr = f"_orthocli_mask_{i}"
            gm.register_buffer(
                attr,
                torch.ones(1, channels, *([1] * spatial), device=weight.device, dtype=weight.dtype),
                persistent=False,
            )
            masks[bank.name] = getattr(gm, attr)
        with gm.graph.inserting_after(node):
            get = gm.graph.get_attr(attr)
        with gm.graph.inserting_after(get):
            mul = gm.graph.call_function(operator.mul, (node, get))
        node.replace_all_uses_with(mul, delete_user_cb=lambda user, mul=mul: user is not mul)
    gm.recompile()
    return gm, masks
