"""A model's graph, traced once by torch.fx, and what the method asks of its structure.

`ModelGraph.trace(model)` traces a model; the filter banks (`banks.py`), the convs that never lose
filters (`fixed_layers`, below), the mask points of the forward hooks (`masking.py`) and
compaction (`compact.py`) all read the one graph, so a `RePr` traces its model once, not once per
question and cycle. A copy of the model gets a copy of the graph (`copy`), not a new trace.

The convs that never lose filters, and why:

- A conv whose output channels reach the model's output without passing through another conv or
  a Linear: its channels *are* outputs (class scores of a 1x1 head, box coordinates, a mask).
  Dropping one would delete an output, and re-introducing it from a null space would reset it.
- A conv module called more than once in the forward pass (shared weights): one filter serves
  several places, and the masks, the freezer and compaction all act on one place per filter.
- A conv whose dropped filters could not be silent at every reader: past the point where its
  channels are handed on, a step maps zero to non-zero where no mask can go
  (`filter_bank.FilterBank.unsilenceable`). The filter banks tell this one, so `banks.fixed_layers`
  adds it to the graph's own (`ModelGraph.fixed_layers`).

Without a model (a bare state dict) the graph is unknown: `drops.plan_drops` then leaves out the
last conv layer (skip_last), the likeliest output layer.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from orthocli.errors import OptionError, first_line

# Calls that mix channels: past them a conv's channels are no longer the model's output values.
_MIXING_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, F.linear}


class TraceError(Exception):
    """torch.fx could not trace the model; the message is the first line of why."""


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside DistributedDataParallel / DataParallel and `torch.compile`'s wrapper
    (their keys and forward pass are the user's module's, prefixed or compiled)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
            model = model._orig_mod
        else:
            return model


def is_conv(module: Any) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd)


class ModelGraph:
    """`model` traced once: its fx GraphModule (sharing the model's parameters), its modules by
    name, how often each module is called, and a cache for what is derived from them."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule) -> None:
        self.model = model
        self.gm = gm
        self.modules: dict[str, nn.Module] = dict(model.named_modules())
        self.calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
        self.cache: dict[str, Any] = {}  # what other modules derive from the graph (banks.py)

    @classmethod
    def trace(cls, model: nn.Module) -> ModelGraph:
        """Trace `model`; TraceError when torch.fx cannot (data-dependent control flow and the like)."""
        model = unwrap(model)
        try:
            return cls(model, fx.symbolic_trace(model))
        except Exception as e:  # torch.fx raises many kinds of errors on untraceable code
            raise TraceError(f"{type(e).__name__}: {first_line(e)}") from None

    @classmethod
    def try_trace(cls, model: nn.Module | None) -> ModelGraph | None:
        """The graph, or None where it is unknown: no model, TorchScript, or untraceable."""
        if model is None or isinstance(model, torch.jit.ScriptModule):
            return None
        try:
            return cls.trace(model)
        except TraceError:
            return None

    def copy(self) -> ModelGraph:
        """A deep copy of the model with a copy of this graph (no new trace): for compaction,
        which changes the model it is given."""
        model = copy.deepcopy(self.model)
        return ModelGraph(model, fx.GraphModule(model, self._graph_copy()))

    def copy_module(self) -> fx.GraphModule:
        """A GraphModule over the same model (sharing its parameters) with a copy of the graph, to
        edit (the masked forward of `banks.masked_forward`) without touching this one."""
        return fx.GraphModule(self.model, self._graph_copy())

    def _graph_copy(self) -> fx.Graph:
        graph = fx.Graph()
        graph.output(graph.graph_copy(self.gm.graph, {}))  # a fresh graph: every node keeps its name
        return graph

    @property
    def nodes(self) -> list[fx.Node]:
        return list(self.gm.graph.nodes)

    def node(self, name: str) -> fx.Node:
        return next(n for n in self.gm.graph.nodes if n.name == name)

    def conv_nodes(self) -> list[fx.Node]:
        """The conv module calls, in graph order."""
        return [n for n in self.gm.graph.nodes if n.op == "call_module" and is_conv(self.modules.get(n.target))]

    def fixed_layers(self) -> dict[str, str]:
        """Conv layer name -> why it is never a drop candidate, in graph order (see the module doc), as
        far as the graph's shape tells; `banks.fixed_layers` adds the convs whose dropped filter could
        not be silent, which the filter banks tell."""
        if "fixed" not in self.cache:
            fixed: dict[str, str] = {}
            for node in self.conv_nodes():
                name = node.target
                if name in fixed:
                    continue
                if self.calls[name] > 1:
                    fixed[name] = (
                        f"shared weights: the module is called {self.calls[name]} times in forward(); give each call its"
                        " own conv to make it a candidate"
                    )
                elif self.reaches_output(node) is not None:
                    fixed[name] = (
                        "its channels are model outputs (they reach the output without another conv or Linear); "
                        "dropping one would delete an output"
                    )
            self.cache["fixed"] = fixed
        return self.cache["fixed"]

    def mixes(self, node: fx.Node) -> bool:
        """Whether `node` mixes channels (a conv or a Linear)."""
        if node.op == "call_module":
            return isinstance(self.modules.get(node.target), (nn.modules.conv._ConvNd, nn.Linear))
        return node.op == "call_function" and node.target in _MIXING_FUNCTIONS

    def reaches_output(self, start: fx.Node) -> fx.Node | None:
        """The node at which `start`'s values reach the graph's output unmixed (None if they do
        not): the walk follows every use and stops at a conv or Linear."""
        stack, seen = [start], {start}
        while stack:
            node = stack.pop()
            for user in node.users:
                if user.op == "output":
                    return node
                if user in seen or self.mixes(user):
                    continue
                seen.add(user)
                stack.append(user)
        return None


def method_graph(model: nn.Module) -> ModelGraph:
    """The graph the method needs to drop filters from `model`; an untraceable model is an
    OptionError (the method can still be left out: no cycles)."""
    try:
        return ModelGraph.trace(model)
    except TraceError as e:
        raise OptionError(
            f"the model cannot be traced by torch.fx, which dropping filters needs ({e}); make its forward"
            " traceable, or train without the method ({cycles} 0)"
        ) from None
