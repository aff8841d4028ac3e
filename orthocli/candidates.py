"""Which conv layers of a model may never lose filters, found from its graph (torch.fx), and why.

- A conv whose output channels reach the model's output without passing through another conv or
  a Linear: its channels *are* outputs (class scores of a 1x1 head, box coordinates, a mask).
  Dropping one would delete an output, and re-introducing it from a null space would reset it.
- A conv module called more than once in the forward pass (shared weights): one filter serves
  several places, and the masks, the freezer and compaction all act on one place per filter.

The same graph walk keeps model outputs at full width in `export --compact` (`compact.py`).
Without a model (a bare state dict) the graph is unknown: `drops.plan_drops` then leaves out the
last conv layer (--skip-last), the likeliest output layer.
"""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch import fx, nn

# Calls that mix channels: past them a conv's channels are no longer the model's output values.
_MIXING_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d, F.linear}


def _mixes(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(node.target), (nn.modules.conv._ConvNd, nn.Linear))
    return node.op == "call_function" and node.target in _MIXING_FUNCTIONS


def reaches_output(start: fx.Node, modules: dict) -> fx.Node | None:
    """The node at which `start`'s values reach the graph's output unmixed (None if they do not):
    the walk follows every use and stops at a conv or Linear."""
    stack, seen = [start], {start}
    while stack:
        node = stack.pop()
        for user in node.users:
            if user.op == "output":
                return node
            if user in seen or _mixes(user, modules):
                continue
            seen.add(user)
            stack.append(user)
    return None


def fixed_layers(model: nn.Module) -> dict[str, str]:
    """Conv layer name -> why it is never a drop candidate, in graph order. Raises what torch.fx
    raises on a model it cannot trace."""
    gm = fx.symbolic_trace(model)
    modules = dict(model.named_modules())
    convs = [
        n
        for n in gm.graph.nodes
        if n.op == "call_module" and isinstance(modules.get(n.target), nn.modules.conv._ConvNd)
    ]
    calls = Counter(n.target for n in convs)
    fixed: dict[str, str] = {}
    for node in convs:
        name = node.target
        if name in fixed:
            continue
        if calls[name] > 1:
            fixed[name] = (
                f"shared weights: the module is called {calls[name]} times in forward(); give each call its own "
                "conv to make it a candidate"
            )
        elif reaches_output(node, modules) is not None:
            fixed[name] = (
                "its channels are model outputs (they reach the output without another conv or Linear); "
                "dropping one would delete an output"
            )
    return fixed


def fixed_or_none(model: nn.Module | None) -> dict[str, str] | None:
    """`fixed_layers`, or None where the graph is unknown (no model, or one torch.fx cannot trace)."""
    if model is None or isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        return fixed_layers(model)
    except Exception:  # torch.fx raises many kinds of errors on untraceable code
        return None


__all__ = ["fixed_layers", "fixed_or_none", "reaches_output"]
