"""Where a conv's output channels are read: the walk, on a model's graph (`graph.ModelGraph`), from a
filter bank's mask point to every module whose weights read its channels. Two users ask it: the
physical removal of dropped filters (`compact.py`, which removes those input channels) and the
re-introduction of filters (`subnet.py`, which zeroes the readers' weights for a re-introduced
channel so that the network's output is unchanged at that moment).

Followed (see docs/compaction.md):

- a conv: its input channels are read (`Reader` "conv_in"; a grouped conv reads each channel with
  the filters of its group, `groups` says how many);
- a BatchNorm, an activation, pooling, dropout: per channel, followed further (a BatchNorm and a
  per-channel PReLU are listed as "bn" / "prelu": they hold per-channel tensors, but mix nothing);
- the depthwise conv that is the bank's only reader (`FilterBank.follow`): followed through to its
  own mask point ("depthwise");
- `torch.cat` along the channels: the bank's channels become a block of the result, at the offset of
  the tensors before it, whose widths `width_of` gives ("concatenation");
- a reduction over the spatial dims (`x.mean((2, 3))`, sum, amax, amin) ("spatial reduction");
- a flatten (torch.flatten / nn.Flatten / view or reshape to (N, -1)), or a reduction to (N, C), then
  a Linear: each channel is a block of its in_features ("linear_flat").

Anything else stops the walk with `Blocked`, whose `kind` says why: "output" (the channels are a
model output), "combined" (they meet another tensor: a residual add), "shared" (a conv called more
than once), "widths" (a concatenation of unknown widths), "unfollowed" (any other step).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx, nn

from orthocli.network.filter_bank import FilterBank
from orthocli.network.graph import ModelGraph
from orthocli.network.zero_steps import per_channel

_ELEMENTWISE = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div}
_PRODUCTS = {operator.mul, torch.mul}  # x * g is zero where x is, whatever g holds
_CONCAT = {torch.cat, torch.concat}
_SHAPE_READS = {"size", "dim"}  # methods that read the batch size and the like, not the values
_REDUCTIONS = {"mean", "sum", "amax", "amin"}  # over the spatial dims: per channel
PATTERNS = ("concatenation", "spatial reduction", "depthwise", "gate")
# Messages name options as `{field}` (errors.render_options): the library's parameter through the
# API, the flag on the command line.
_UNFOLLOWED = (
    "its channels reach {}, which orthocli cannot follow (docs/compaction.md lists what it follows); write that "
    "step with a followed operation, or exclude the layer from dropping ({{exclude}}) so it keeps its filters"
)


@dataclass(frozen=True)
class _Path:
    """Where a layer's channels sit in the tensor being followed: channels [offset, offset +
    filters) of `width` along dim 1, in a tensor of `ndim` dims; `flat`: flattened to (N, features),
    each channel a block of features / width."""

    offset: int
    width: int
    ndim: int
    flat: bool = False
    patterns: frozenset = frozenset()

    def via(self, pattern: str, **changes) -> _Path:
        return _Path(**{**self.__dict__, "patterns": self.patterns | {pattern}, **changes})


@dataclass
class Reader:
    """A module that reads the bank's channels: channels [offset, offset + filters) of the `width`
    it reads."""

    kind: str  # conv_in | bn | prelu | linear_flat
    target: str  # module path
    offset: int  # where the layer's channels start in what the reader reads
    width: int  # the channels the reader reads
    groups: int = 1  # conv_in: the reading conv's groups


class Blocked(Exception):
    """The channels reach something the walk cannot follow; `kind` says what (module docstring)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def readers(
    graph: ModelGraph,
    bank: FilterBank,
    banks: dict[str, FilterBank],
    width_of: Callable[[fx.Node], int | None] | None,
    *,
    couple: bool = False,
    found: list[Reader] | None = None,
    steps: list[fx.Node] | None = None,
) -> tuple[list[Reader], set[str]]:
    """Every module whose weights read `bank`'s channels, and the patterns passed on the way;
    raises Blocked. `width_of`: a node's channel count, for concatenations (None: unknown).

    A product with another tensor (`x * gate`, a squeeze-excite block) is followed: its channel c
    is zero wherever x's is. With `couple` (compaction, which must narrow both factors) only where
    the other factor is a gate: made by a conv of the same width through per-channel steps that
    nothing else reads (a "gate" Reader: that conv loses the same output channels), or broadcast
    over the channels. `found` and `steps`, where given, collect the readers and the per-channel
    steps passed, also when the walk ends in Blocked."""
    modules, calls = graph.modules, graph.calls
    start = graph.node(bank.mask_node)
    filters = modules[bank.name].out_channels
    found = [] if found is None else found
    patterns: set[str] = set()
    stack = [(user, start, _Path(0, filters, modules[bank.name].weight.dim())) for user in start.users]
    seen = set()
    while stack:
        node, src, path = stack.pop()
        if (node, src, path.offset) in seen:
            continue
        seen.add((node, src, path.offset))
        patterns |= path.patterns
        if node.op == "output":
            raise Blocked(
                "output",
                f"its channels are an output of the model ({_describe(src)}); outputs keep every channel. prune and"
                " train no longer drop from such a layer: prune again",
            )
        if node.op == "call_method" and node.target in _SHAPE_READS:
            continue
        if node.op == "call_function" and node.target in _CONCAT:
            parts = node.args[0]
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            if not isinstance(parts, (list, tuple)) or dim % path.ndim != 1 or path.flat:
                raise Blocked(
                    "unfollowed",
                    f"its channels are concatenated at '{node.name}' along a dim other than the channels; only "
                    "torch.cat(..., dim=1) is followed",
                )
            widths = [width_of(p) if width_of is not None and isinstance(p, fx.Node) else None for p in parts]
            if any(w is None for w in widths):
                raise Blocked(
                    "widths",
                    f"its channels are concatenated at '{node.name}'; following a concatenation needs the widths of its"
                    " inputs, which the modules that make them do not say: an example input must be run",
                )
            for i, p in enumerate(parts):
                if p is src:
                    offset = sum(widths[:i]) + path.offset
                    more = path.via("concatenation", offset=offset, width=sum(widths))
                    stack.extend((user, node, more) for user in node.users)
            continue
        if node.op == "call_function" and node.target in _ELEMENTWISE | {torch.stack}:
            tensors = [a for a in (*node.args, *node.kwargs.values()) if isinstance(a, fx.Node)]
            if node.target in _PRODUCTS and len(tensors) == 2 and not path.flat:
                other, gate = tensors[1] if tensors[0] is src else tensors[0], None
                if couple:
                    gate = _gate(graph, other, src, path, width_of)
                    if gate is None:
                        raise Blocked(
                            "combined",
                            f"its channels are multiplied at '{node.name}' by a tensor that other layers read too; both"
                            " factors would have to lose the channels; exclude the layer from dropping ({exclude}) if"
                            " it should keep every filter",
                        )
                    if gate:
                        found.append(Reader("gate", gate, path.offset, path.width))
                        patterns.add("gate")
                stack.extend((user, node, path.via("gate") if gate else path) for user in node.users)
                continue
            if node.target is torch.stack or len(tensors) != 1:
                raise Blocked(
                    "combined",
                    f"its channels meet another tensor at '{node.name}' (a residual add or the like), which needs both"
                    " at the same width; exclude the layer from dropping ({exclude}) if it should keep every filter",
                )
            if steps is not None:
                steps.append(node)  # x * 2 keeps a zero channel zero, x + 1 does not
            stack.extend((user, node, path) for user in node.users)  # x * 2, x + 1: element-wise with a constant
            continue
        if not node.args or node.args[0] is not src:
            raise Blocked("unfollowed", _UNFOLLOWED.format(_describe(node)))
        mod = modules.get(node.target) if node.op == "call_module" else None
        follow, nxt = True, node
        if isinstance(mod, nn.modules.conv._ConvNd):
            if path.flat:
                raise Blocked("unfollowed", f"its flattened channels reach the conv {_describe(node)}")
            if calls[node.target] > 1:
                raise Blocked(
                    "shared",
                    f"its channels reach the conv '{node.target}', which is called {calls[node.target]} times (shared"
                    " weights): its input channels cannot shrink at one call only",
                )
            if node.target in bank.follow:
                nxt = graph.node(banks[node.target].mask_node)
                path = path.via("depthwise")
                patterns.add("depthwise")
            else:
                found.append(Reader("conv_in", node.target, path.offset, path.width, mod.groups))
                follow = False
        elif isinstance(mod, nn.Linear):
            if not path.flat:
                raise Blocked(
                    "unfollowed",
                    f"its channels reach the Linear {_describe(node)} without a flatten or a spatial reduction",
                )
            found.append(Reader("linear_flat", node.target, path.offset, path.width))
            follow = False
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
            if path.flat:
                raise Blocked("unfollowed", f"its flattened channels reach the BatchNorm {_describe(node)}")
            found.append(Reader("bn", node.target, path.offset, path.width))
        elif isinstance(mod, nn.PReLU):
            if mod.num_parameters > 1:
                if path.flat:
                    raise Blocked("unfollowed", f"its flattened channels reach the PReLU {_describe(node)}")
                found.append(Reader("prelu", node.target, path.offset, path.width))
        elif flatten_start(node, modules) is not None:
            if path.flat or flatten_start(node, modules) != 1:
                raise Blocked("unfollowed", f"its channels are reshaped at {_describe(node)}")
            path = _Path(path.offset, path.width, 2, True, path.patterns)
        elif _is_reduction(node):
            reduced = None if path.flat else _dims(node, path.ndim)
            if reduced is None or reduced[0][0] < 2:
                raise Blocked(
                    "unfollowed",
                    f"its channels are reduced at {_describe(node)} over a dim other than the spatial ones",
                )
            dims, keep = reduced
            ndim = path.ndim if keep else path.ndim - len(dims)
            path = path.via("spatial reduction", ndim=ndim, flat=ndim == 2)
            patterns.add("spatial reduction")
        elif not per_channel(node, modules):
            raise Blocked("unfollowed", _UNFOLLOWED.format(_describe(node)))
        elif steps is not None:
            steps.append(node)
        if follow:
            stack.extend((user, nxt, path) for user in nxt.users)
    return found, patterns


def shape_width(node: fx.Node) -> int | None:
    """A node's channel count from a shape-propagation run (`ShapeProp`), where it has one."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return int(shape[1]) if shape is not None and len(shape) > 1 else None


def module_width(graph: ModelGraph) -> Callable[[fx.Node], int | None]:
    """A node's channel count from the modules that made it, without running the model: a conv's
    out_channels, a BatchNorm's features, through per-channel steps and concatenations."""
    modules = graph.modules

    def width(node: fx.Node) -> int | None:
        for _ in range(1000):  # a chain of per-channel steps, walked back to what made the channels
            mod = modules.get(node.target) if node.op == "call_module" else None
            if isinstance(mod, nn.modules.conv._ConvNd):
                return mod.out_channels
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                return mod.num_features
            if node.op == "call_function" and node.target in _CONCAT and isinstance(node.args[0], (list, tuple)):
                parts = [width(p) if isinstance(p, fx.Node) else None for p in node.args[0]]
                return None if any(w is None for w in parts) else sum(parts)
            if not node.args or not isinstance(node.args[0], fx.Node) or not per_channel(node, modules):
                return None
            node = node.args[0]
        return None

    return width


def flatten_start(node: fx.Node, modules: dict) -> int | None:
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


def _gate(graph: ModelGraph, other: fx.Node, src: fx.Node, path: _Path, width_of) -> str | bool | None:
    """What multiplies the followed channels at a product: the conv whose output channels are the
    gate's (a squeeze-excite block's last conv), walked back through per-channel steps that
    nothing else reads; False for a factor broadcast over the channels (nothing to narrow);
    None where the factor is anything else."""
    modules = graph.modules
    if width_of is not None and width_of(other) == 1:
        return False
    node = other
    for _ in range(100):
        if len(node.users) != 1 or node is src:
            return None
        mod = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(mod, nn.modules.conv._ConvNd):
            ok = mod.groups == 1 and not mod.transposed and graph.calls[node.target] == 1
            return node.target if ok and mod.out_channels == path.width else None
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) or per_channel(node, modules):
            node = node.args[0]
            continue
        return None
    return None


def _describe(node: fx.Node) -> str:
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    return f"'{node.name}' ({node.op} {target})"


def _dims(node: fx.Node, ndim: int) -> tuple[list[int], bool] | None:
    """The dims a mean/sum/amax/amin reduces, made non-negative, and keepdim; None if not known."""
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    if dim is None or not isinstance(keep, bool):
        return None
    dims = [dim] if isinstance(dim, int) else list(dim)
    if not dims or not all(isinstance(d, int) and -ndim <= d < ndim for d in dims):
        return None
    return sorted({d % ndim for d in dims}), keep


def _is_reduction(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _REDUCTIONS
    return node.op == "call_function" and node.target in (torch.mean, torch.sum, torch.amax, torch.amin)
