"""The model's structure: conv layers found in a module or a state dict and chosen by
pattern (layers.py, layer_patterns.py), the graph traced once (graph.py), filter banks (banks.py),
the modules that read a channel (channel_readers.py), the built-in architectures (models.py), and
physically removing dropped filters (compact.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orthocli.faces import lazy_names

_WHERE = {
    "ConvLayer": "orthocli.network.layers",
    "convs_from_module": "orthocli.network.layers",
    "convs_from_state_dict": "orthocli.network.layers",
    "select": "orthocli.network.layers",
    "filter_count": "orthocli.network.layers",
    "check": "orthocli.network.layer_patterns",
    "listing": "orthocli.network.layer_patterns",
    "ModelGraph": "orthocli.network.graph",
    "TraceError": "orthocli.network.graph",
    "method_graph": "orthocli.network.graph",
    "unwrap": "orthocli.network.graph",
    "DROPPED_VALUE": "orthocli.network.banks",
    "FilterBank": "orthocli.network.banks",
    "banks_from_layers": "orthocli.network.banks",
    "banks_from_model": "orthocli.network.banks",
    "fixed_layers": "orthocli.network.banks",
    "masked_forward": "orthocli.network.banks",
    "zero_dropped": "orthocli.network.banks",
    "Blocked": "orthocli.network.channel_readers",
    "module_width": "orthocli.network.channel_readers",
    "readers": "orthocli.network.channel_readers",
    "BUILTIN": "orthocli.network.models",
    "ConvNet": "orthocli.network.models",
    "ResNet20": "orthocli.network.models",
    "arch_spec": "orthocli.network.models",
    "build_model": "orthocli.network.models",
    "init_weights": "orthocli.network.models",
    "apply_widths": "orthocli.network.compact",
    "compacted": "orthocli.network.compact",
    "param_count": "orthocli.network.compact",
}
__all__ = [
    "BUILTIN",
    "Blocked",
    "ConvLayer",
    "ConvNet",
    "DROPPED_VALUE",
    "FilterBank",
    "ModelGraph",
    "ResNet20",
    "TraceError",
    "apply_widths",
    "arch_spec",
    "banks_from_layers",
    "banks_from_model",
    "build_model",
    "check",
    "compacted",
    "convs_from_module",
    "convs_from_state_dict",
    "filter_count",
    "fixed_layers",
    "init_weights",
    "listing",
    "masked_forward",
    "method_graph",
    "module_width",
    "param_count",
    "readers",
    "select",
    "unwrap",
    "zero_dropped",
]

if TYPE_CHECKING:
    from orthocli.network.banks import (
        DROPPED_VALUE,
        FilterBank,
        banks_from_layers,
        banks_from_model,
        fixed_layers,
        masked_forward,
        zero_dropped,
    )
    from orthocli.network.channel_readers import Blocked, module_width, readers
    from orthocli.network.compact import apply_widths, compacted, param_count
    from orthocli.network.graph import ModelGraph, TraceError, method_graph, unwrap
    from orthocli.network.layer_patterns import check, listing
    from orthocli.network.layers import ConvLayer, convs_from_module, convs_from_state_dict, filter_count, select
    from orthocli.network.models import BUILTIN, ConvNet, ResNet20, arch_spec, build_model, init_weights

__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
