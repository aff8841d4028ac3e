"""Plain functions of the method, on an nn.Module or a state dict: score the conv filters, plan
which to drop, drop them, re-introduce them. The controller for a training loop is
`controller.RePr`; `orthocli` exports all of these (see docs/api.md). Their options are
`ReprConfig`'s (a config, or its fields as keywords), with its defaults and checks.

A module's filter banks (the tensors indexed by each conv's output channels: its bias, the
BatchNorm after it) are found from its graph (`graph.ModelGraph`, traced by torch.fx); a bare
state dict has conv weights and biases only. Everything changes tensors in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from orthocli.config import ReprConfig
from orthocli.method.drops import DropPlan
from orthocli.method.drops import plan_drops as _plan
from orthocli.method.filter_statistics import bn_scales
from orthocli.method.layer_scores import score_layers
from orthocli.method.ranking import BN_SCALE, BY_NAME, Ranking, needs
from orthocli.method.subnet import apply_drops, make_record, reintroduce
from orthocli.network.banks import FilterBank, banks_from_layers, banks_from_model, fixed_layers
from orthocli.network.graph import ModelGraph, method_graph, unwrap
from orthocli.network.layers import ConvLayer, convs_from_module, convs_from_state_dict

Source = nn.Module | Mapping[str, torch.Tensor]


def _config(config: ReprConfig | None, options: dict[str, Any]) -> ReprConfig:
    if config is not None and options:
        raise TypeError("give either a ReprConfig or keyword options, not both")
    return config if config is not None else ReprConfig(**options)


def _layers(source: Source) -> list[ConvLayer]:
    if isinstance(source, nn.Module):
        return convs_from_module(unwrap(source))
    return convs_from_state_dict(dict(source))


def _state_banks_graph(source: Source) -> tuple[dict[str, torch.Tensor], list[FilterBank], ModelGraph | None]:
    if isinstance(source, nn.Module):
        model = unwrap(source)
        graph = method_graph(model)
        return model.state_dict(), banks_from_model(graph), graph  # the state dict shares the storage
    state = dict(source)
    return state, banks_from_layers(convs_from_state_dict(state), state), None


def score(source: Source) -> dict[str, torch.Tensor]:
    """Orthogonality score of every filter of every conv layer: layer name -> (filters,) float
    tensor, higher = more redundant (method.md: mean |cosine| to the layer's other filters)."""
    return {s.layer.name: s.scores for s in score_layers(_layers(source))}


def plan_drops(
    source: Source,
    config: ReprConfig | None = None,
    *,
    counts: Mapping[str, int] | None = None,
    ranking: Ranking | None = None,
    **options: Any,
) -> DropPlan:
    """Which filters `orthocli prune` (and each cycle of `orthocli train`) would drop, by the same
    rule: `.drops` maps layer name -> sorted filter indices; `.excluded` and `.reasons` say which
    layers were left alone and why. Options: a `ReprConfig`, or its fields as keywords (`ratio`,
    `threshold`, `scope`, `min_keep`, `ranking`, `layers`, `exclude`, `skip_first`, `skip_last`,
    `seed`). `counts` (layer -> filters) replaces the rule: exactly that many per layer, chosen by
    the ranking (another run's counts). `ranking`: a `method.ranking.Ranking` object of your own,
    or a name as `ranking=` takes it. A module's output layers and shared convs (seen by torch.fx)
    keep every filter; for a state dict `skip_last` leaves the likely output convs alone instead.
    The bn-scale ranking reads the BatchNorm after each conv from a traced module; taylor and
    activation need training batches (`RePr`), so here they are a UsageError. Changes nothing."""
    if isinstance(ranking, str):
        options["ranking"] = ranking
        ranking = None
    config = _config(config, options)
    model = unwrap(source) if isinstance(source, nn.Module) else None
    graph = ModelGraph.try_trace(model)
    rank = ranking if ranking is not None else BY_NAME[config.ranking]
    scales = None
    if BN_SCALE in needs(rank):
        state, banks, _ = _state_banks_graph(source) if graph is not None else (dict(source.state_dict()), [], None)
        scales = bn_scales(banks, state)
    fixed = None if graph is None else fixed_layers(graph)
    return _plan(_layers(source), config, fixed=fixed, counts=counts, ranking=ranking, bn_scales=scales)


def drop(source: Source, drops: DropPlan | Mapping[str, torch.Tensor]) -> dict:
    """Zero the chosen filters in place (conv weights and biases, the BatchNorm affine parameters
    after them) and return the drop record: plain data with their values before the drop, what
    `reinitialize` and `SubNetwork` take and `orthocli prune` saves as extras["prune"]."""
    plan = drops if isinstance(drops, DropPlan) else None
    chosen = dict(plan.drops if plan is not None else drops)
    state, banks, graph = _state_banks_graph(source)
    record = make_record(state, banks, chosen, plan.rule_dict() if plan is not None else {}, graph)
    apply_drops(state, record)
    return record


def reinitialize(
    source: Source,
    record: dict,
    config: ReprConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> dict[str, dict[str, int]]:
    """Give the dropped filters of `record` new values in place, from the null space of [kept
    filters; their values before the drop] (QR), each of norm `reinit_scale` x the layer's mean
    kept filter norm; their bias and BatchNorm parameters and statistics start fresh (0, 1, 0, 1);
    with `reinit_fan_out="zero"` (the default, as `RePr`'s) the next layer's weights for them are
    zeroed. Options: a `ReprConfig`, or its fields as keywords. Returns per layer how many came from
    the null space and how many needed a fallback. Reset the optimizer state of these rows yourself
    (or use `RePr`, which does)."""
    config = _config(config, options)
    state = unwrap(source).state_dict() if isinstance(source, nn.Module) else dict(source)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    return reintroduce(state, record, gen, config.reinit_scale, config.reinit_fan_out)
