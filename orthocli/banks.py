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
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from orthocli.graph import ModelGraph
from orthocli.layers import ConvLayer, filter_count


@dataclass
class Channel:
    """One tensor indexed by a conv's output channels along `dim`."""

    key: str
    dim: int
    # conv_weight | conv_bias | bn_weight | bn_bias | bn_mean | bn_var | other; dw_<role>: see `follow`;
    # rd_<role>: a BatchNorm that reads the channels further on (after a concatenation), at `offset`
    role: str
    offset: int = 0  # the bank's filter i is index offset + i of this tensor


@dataclass
class FilterBank:
    name: str  # the conv's weight key without ".weight"
    key: str
    groups: int = 1
    transposed: bool = False
    channels: list[Channel] = field(default_factory=list)
    mask_node: str | None = None  # fx node after which the channels are masked
    # Depthwise convs that read this bank's channels one to one (channel i -> their filter i): a
    # dropped channel takes their filter, bias and BatchNorm with it (roles "dw_*" in `channels`),
    # and their output is masked too, so the sub-network is what compaction leaves.
    follow: list[str] = field(default_factory=list)
    # Why a dropped filter of this conv could not be silent at every reader (a step after the mask
    # point maps zero to non-zero where no mask can go); None: it can. Such a conv is never dropped from.
    unsilenceable: str | None = None


PER_CHANNEL_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.SELU,
    nn.CELU,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Mish,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
PER_CHANNEL_FUNCTIONS = {
    torch.relu,
    F.relu,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.gelu,
    F.silu,
    F.leaky_relu,
    F.elu,
    F.relu6,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.softplus,
    F.mish,
    F.selu,
    F.celu,
    F.dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
}
PER_CHANNEL_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}

# What an operation not in the lists above does is found by running it (`_probe`) on small random
# inputs: per channel when channel c of its output depends on channel c of its input only, and
# whether it maps an all-zero input to zero. Only parameter-free modules and calls whose other
# arguments are constants are run; anything else is taken as mixing channels.
_REDUCTIONS = {"mean", "sum", "amax", "amin", torch.mean, torch.sum, torch.amax, torch.amin}
_PROBE_SHAPES = ((2, 3, 5, 5), (2, 3, 7), (2, 3, 4, 4, 4))
_probed_modules: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probed_calls: dict = {}


def _probe(fn) -> tuple[bool, bool]:
    """(per channel, maps zero to zero) for a function of one tensor; (False, False) where it
    fails on every probe shape or returns something else."""
    for shape in _PROBE_SHAPES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=gen)
        other = x.clone()
        other[:, 1] = torch.randn(other[:, 1].shape, generator=gen)
        try:
            out, again, moved, zero = (_seeded(fn, t) for t in (x.clone(), x.clone(), other, torch.zeros(shape)))
        except Exception:  # not for this spatial rank, or not a tensor function at all
            continue
        if not all(isinstance(t, torch.Tensor) and t.shape == out.shape for t in (out, again, moved, zero)):
            return False, False
        if out.dim() != x.dim() or out.shape[:2] != x.shape[:2] or not torch.equal(out, again):
            return False, False
        per_channel = torch.equal(out[:, [0, 2]], moved[:, [0, 2]])
        return per_channel, per_channel and bool((zero == 0).all())
    return False, False


def _seeded(fn, x: torch.Tensor):
    """fn(x) with the same random numbers every call (a dropout in training mode drops the same
    elements), leaving the global random state as it was: probing changes no seeded run."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        return fn(x)


def _probed(node, modules: dict[str, nn.Module]) -> tuple[bool, bool]:
    """`_probe` of what `node` does to its first argument, cached; (False, False) where it takes
    another tensor or holds parameters or buffers (its values would decide)."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False, False
    others: list = []
    fx.node.map_arg((node.args[1:], node.kwargs), others.append)
    if others:
        return False, False
    rest, kwargs = node.args[1:], dict(node.kwargs)
    if node.op == "call_module":
        mod = modules.get(node.target)
        if mod is None or rest or kwargs or next(iter(mod.parameters()), None) is not None:
            return False, False
        if next(iter(mod.buffers()), None) is not None:
            return False, False
        if mod not in _probed_modules:
            _probed_modules[mod] = _probe(mod)
        return _probed_modules[mod]
    if node.op == "call_function":
        fn = lambda x: node.target(x, *rest, **kwargs)  # noqa: E731
    elif node.op == "call_method":
        fn = lambda x: getattr(x, node.target)(*rest, **kwargs)  # noqa: E731
    else:
        return False, False
    try:
        key = (node.op, node.target, repr(rest), repr(kwargs))
    except Exception:  # an argument without a repr: probe every time
        return _probe(fn)
    if key not in _probed_calls:
        _probed_calls[key] = _probe(fn)
    return _probed_calls[key]


def per_channel(node, modules: dict[str, nn.Module]) -> bool:
    """Whether `node` acts on each channel of its first argument by itself (an activation,
    pooling, dropout: the listed ones, or any such step found by running it). BatchNorm and PReLU,
    which hold per-channel tensors, are their callers' to handle."""
    if node.op == "call_module" and isinstance(modules.get(node.target), PER_CHANNEL_MODULES):
        return True
    if node.op == "call_function" and node.target in PER_CHANNEL_FUNCTIONS:
        return True
    if node.op == "call_method" and node.target in PER_CHANNEL_METHODS:
        return True
    if node.target in _REDUCTIONS:  # per channel too, but followed as a reduction (channel_readers.py)
        return False
    return _probed(node, modules)[0]


def keeps_zero(node, modules: dict[str, nn.Module]) -> bool:
    """Whether this per-channel step maps a dropped (all-zero) channel to zero, decided by what it
    does to zero, not by its name: a BatchNorm by its affine parameters (zero for a dropped
    filter; without them (0 - mean) / std != 0), a PReLU always, anything else by running it on
    zeros (a sigmoid and a hard sigmoid give 0.5, a softplus log 2)."""
    mod = modules.get(node.target) if node.op == "call_module" else None
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        return mod.affine
    if isinstance(mod, nn.PReLU):
        return True
    return _probed(node, modules)[1]


def _conv_channels(prefix: str, conv: nn.Module) -> list[Channel]:
    chans = [Channel(f"{prefix}weight", 1 if conv.transposed else 0, "conv_weight")]
    if conv.bias is not None:
        chans.append(Channel(f"{prefix}bias", 0, "conv_bias"))
    return chans


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
    from orthocli.channel_readers import Blocked, module_width, readers  # (they read the banks)

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
