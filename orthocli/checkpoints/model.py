"""From a checkpoint to its model: what a checkpoint's weights belong to, and what that says.

`checkpoint.py` reads files into a `Checkpoint` (weights and orthocli's records); `models.py` holds
the architectures. This module joins them: `rebuild(arch)` builds the model an architecture dict
describes, narrowed to the widths a compact export recorded; `CheckpointModel(ckpt)` answers, once
each, what commands ask of a checkpoint: its model (a trusted pickled module, or its recorded
architecture with the weights loaded), the model's graph (traced once), its conv layers with
their real layout, the tensors each conv's filters index (its filter banks), and the convs that
must keep every filter.
"""

from __future__ import annotations

from functools import cached_property

import torch
from torch import nn

from orthocli.checkpoints.checkpoint import Checkpoint
from orthocli.errors import CheckpointError, OptionError, TrustError
from orthocli.network.banks import FilterBank, banks_from_layers, banks_from_model, fixed_layers
from orthocli.network.compact import apply_widths
from orthocli.network.graph import ModelGraph, TraceError
from orthocli.network.layer_patterns import check as check_patterns
from orthocli.network.layer_patterns import listing
from orthocli.network.layers import ConvLayer, convs_from_module, convs_from_state_dict, select
from orthocli.network.models import build_model, sample_shape


def rebuild(
    arch: dict, *, trusted: bool = True, where: object = "the checkpoint", error: type[Exception] = CheckpointError
) -> nn.Module:
    """The model `arch` describes, without weights. A compact model (`orthocli export --compact`)
    records `"widths"`: {conv name: filters kept}; the model is narrowed to them.

    A `callable` architecture names code (`package.module:function`) that building the model
    imports and calls with arguments the record gives: from a file, that is code the file chooses,
    so it is built only when `trusted` (the user's --trust); a TrustError (exit 6) otherwise. A
    builder that cannot be imported or refuses the arguments raises `error`."""
    if arch.get("name") == "callable" and not trusted:
        raise TrustError(
            f"{where}: records the architecture '{arch.get('target')}', code that building the model would import"
            " and run with arguments the file gives; rerun with --trust if you trust the file"
        )
    model = build_model(arch, error=error)
    if arch.get("widths"):
        shape = sample_shape(arch)
        example = torch.zeros(1, *shape) if shape is not None and len(shape) > 1 else None
        apply_widths(model, arch["widths"], example)
    return model


def load_weights(model: nn.Module, state_dict: dict, path, arch: dict | None = None) -> nn.Module:
    """`model` with `state_dict` loaded (strict); a mismatch is one clear CheckpointError."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        lines = [line.strip().rstrip(".") for line in str(e).splitlines()[1:] if line.strip()]
        name = (arch or {}).get("target") or (arch or {}).get("name") or type(model).__name__
        raise CheckpointError(
            f"{path}: its weights do not fit the architecture {name} ({'; '.join(lines)[:300]})"
        ) from None
    return model


class CheckpointModel:
    """What a checkpoint's weights belong to, each answer computed once."""

    def __init__(self, ckpt: Checkpoint, *, trust: bool = False) -> None:
        self.ckpt = ckpt
        self.trust = trust  # the user's --trust: a `callable` architecture may be built (`rebuild`)

    @cached_property
    def architecture(self) -> nn.Module | None:
        """The model the recorded architecture describes (None without one); `model` loads the
        weights into this same module."""
        arch = self.ckpt.extras.get("arch")
        return rebuild(arch, trusted=self.trust, where=self.ckpt.path) if arch else None

    @cached_property
    def model(self) -> nn.Module | None:
        """The nn.Module the weights belong to, where known (a trusted pickled module, an orthocli
        architecture); None for a bare state dict or a TorchScript archive."""
        module = self.ckpt.module
        if isinstance(module, nn.Module) and not isinstance(module, torch.jit.ScriptModule):
            return module
        if self.architecture is not None:
            return load_weights(self.architecture, self.ckpt.state_dict, self.ckpt.path, self.ckpt.extras["arch"])
        return None

    @cached_property
    def graph(self) -> ModelGraph | None:
        """The model's graph; None where it is unknown (no model, or one torch.fx cannot trace)."""
        return ModelGraph.try_trace(self.model)

    def fixed_layers(self) -> dict[str, str] | None:
        """The convs that keep every filter (output layers, shared convs), or None without a graph."""
        return None if self.graph is None else fixed_layers(self.graph)

    def convs(self) -> list[ConvLayer]:
        """The conv layers: from the checkpoint's module where it holds one, from its recorded
        architecture (layout) and weights where it records one, else guessed from the weights' shapes."""
        if self.ckpt.module is not None:
            return convs_from_module(self.ckpt.module)
        if self.architecture is not None:
            state = self.ckpt.state_dict
            return [
                ConvLayer(layer.name, layer.key, state[layer.key], layer.groups, layer.transposed, True)
                for layer in convs_from_module(self.architecture)
                if layer.key in state
            ]
        return convs_from_state_dict(self.ckpt.state_dict)

    def select_convs(self, include: list[str] | None = None, exclude: list[str] | None = None) -> list[ConvLayer]:
        """The conv layers matching the patterns; an error when there are none."""
        found = self.convs()
        if not found:
            raise CheckpointError(
                f"{self.ckpt.path}: no conv layers found (looked for 3-D to 5-D floating-point tensors named '*weight')"
            )
        names = [layer.name for layer in found]
        check_patterns(names, include, exclude, str(self.ckpt.path))
        chosen = select(found, include, exclude)
        if not chosen:
            raise OptionError(f"{self.ckpt.path}: {{layers}}/{{exclude}} leave no conv layer; {listing(names)}")
        return chosen

    def banks(self) -> list[FilterBank]:
        """Per conv, the tensors indexed by its filters. With a known model, from its graph
        (BatchNorm and the mask point included); otherwise each conv weight and its bias only."""
        if self.model is None:
            return banks_from_layers(self.convs(), self.ckpt.state_dict)
        try:
            graph = self.graph if self.graph is not None else ModelGraph.trace(self.model)
        except TraceError as e:  # fx cannot trace every model (data-dependent control flow)
            raise CheckpointError(f"{self.ckpt.path}: cannot trace the model with torch.fx ({e})") from None
        return banks_from_model(graph)
