"""Plain functions of the method, on an nn.Module or a state dict: score the conv filters, plan
which to drop, drop them, re-introduce them. The controller for a training loop is
`controller.RePr`; `orthocli` exports all of these (see docs/api.md).

A module's filter banks (the tensors indexed by each conv's output channels: its bias, the
BatchNorm after it) are found by tracing it with torch.fx; a bare state dict has conv weights
and biases only. Everything changes tensors in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

import torch
from torch import nn

from orthocli.banks import FilterBank, banks_from_layers
from orthocli.candidates import fixed_or_none
from orthocli.controller import trace_banks, unwrap
from orthocli.droprule import DEFAULT_DROP
from orthocli.drops import DropPlan, DropRule
from orthocli.drops import plan_drops as _plan
from orthocli.layer_scores import score_layers
from orthocli.layers import ConvLayer, convs_from_module, convs_from_state_dict
from orthocli.subnet import apply_drops, make_record, reintroduce

Source = nn.Module | Mapping[str, torch.Tensor]


def _layers(source: Source) -> list[ConvLayer]:
    if isinstance(source, nn.Module):
        return convs_from_module(unwrap(source))
    return convs_from_state_dict(dict(source))


def _state_and_banks(source: Source) -> tuple[dict[str, torch.Tensor], list[FilterBank]]:
    if isinstance(source, nn.Module):
        model = unwrap(source)
        return model.state_dict(), trace_banks(model)  # the state dict shares the parameters' storage
    state = dict(source)
    return state, banks_from_layers(convs_from_state_dict(state), state)


def score(source: Source) -> dict[str, torch.Tensor]:
    """Orthogonality score of every filter of every conv layer: layer name -> (filters,) float
    tensor, higher = more redundant (method.md: mean |cosine| to the layer's other filters)."""
    return {s.layer.name: s.scores for s in score_layers(_layers(source))}


def plan_drops(
    source: Source,
    *,
    ratio: float | None = None,
    threshold: float | None = None,
    scope: str = DEFAULT_DROP.scope,
    min_keep: int = DEFAULT_DROP.min_keep,
    layers: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip_first: bool = DEFAULT_DROP.skip_first,
    skip_last: bool = DEFAULT_DROP.skip_last,
) -> DropPlan:
    """Which filters `orthocli prune` (and each cycle of `orthocli train`) would drop, by the same
    rule: `.drops` maps layer name -> sorted filter indices; `.excluded` and `.reasons` say which
    layers were left alone and why. A module's output layers and shared convs (seen by torch.fx)
    keep every filter; for a state dict `skip_last` leaves the likely output convs alone instead.
    Neither `ratio` nor `threshold` (the default): each layer drops its share of redundancy above
    random filters of its shape (`DropRule`). Changes nothing."""
    try:
        rule = DropRule(ratio=ratio, threshold=threshold, scope=scope, min_keep=min_keep)
    except ValueError as e:
        from orthocli.errors import UsageError

        raise UsageError(str(e)) from None
    model = unwrap(source) if isinstance(source, nn.Module) else None
    return _plan(
        _layers(source),
        rule,
        include=list(layers) or None,
        exclude=list(exclude) or None,
        skip_first=skip_first,
        skip_last=skip_last,
        fixed=fixed_or_none(model),
    )


def drop(source: Source, drops: DropPlan | Mapping[str, torch.Tensor]) -> dict:
    """Zero the chosen filters in place (conv weights and biases, the BatchNorm affine parameters
    after them) and return the drop record: plain data with their values before the drop, what
    `reinitialize` and `SubNetwork` take and `orthocli prune` saves as extras["prune"]."""
    plan = drops if isinstance(drops, DropPlan) else None
    chosen = dict(plan.drops if plan is not None else drops)
    state, banks = _state_and_banks(source)
    record = make_record(state, banks, chosen, asdict(plan.rule) if plan is not None else {})
    apply_drops(state, record)
    return record


def reinitialize(
    source: Source, record: dict, *, generator: torch.Generator | None = None, scale: float = 1.0
) -> dict[str, dict[str, int]]:
    """Give the dropped filters of `record` new values in place, from the null space of [kept
    filters; their values before the drop] (QR), each of norm `scale` x the layer's mean kept
    filter norm; their bias and BatchNorm parameters and statistics start fresh (0, 1, 0, 1).
    Returns per layer how many came from the null space and how many needed a fallback. Reset the
    optimizer state of these rows yourself (or use `RePr`, which does)."""
    state = unwrap(source).state_dict() if isinstance(source, nn.Module) else dict(source)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    return reintroduce(state, record, gen, scale)
