"""Is there anything to remove? Each candidate layer's mean filter score against that of random
filters of its shape (`LayerScores.chance`), and what the drop rule would take from it: what
`orthocli train` states before training and at the first drop, so a user whose layers are no more
redundant than chance learns it before spending a run (the default rule then drops nothing, and the
method run equals the control). `live_means` gives the per-epoch figures the training history
records. No printing: the caller words it (`experiment.Reporter.redundancy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from orthocli.config import ReprConfig
from orthocli.method.drops import candidate_layers, excess_quota
from orthocli.method.layer_scores import LayerScores, score_layers
from orthocli.network.banks import fixed_layers
from orthocli.network.graph import ModelGraph, unwrap
from orthocli.network.layers import ConvLayer, convs_from_module


@dataclass(frozen=True)
class LayerRedundancy:
    name: str
    filters: int
    mean: float  # the mean score of its live filters (a dropped filter's zeros would score 1)
    chance: float  # the mean score of Gaussian random filters of its shape
    # What the default (adaptive) rule would drop from these weights; None under --ratio or
    # --threshold, which drop whatever the level.
    drops: int | None

    @property
    def ratio(self) -> float | None:
        """mean / chance: above 1 more redundant than random filters; None for a chance of 0."""
        return self.mean / self.chance if self.chance > 0 else None

    @property
    def above_chance(self) -> bool:
        return self.mean > self.chance

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "filters": self.filters,
            "mean": self.mean,
            "chance": self.chance,
            "ratio": self.ratio,
            "above_chance": self.above_chance,
            "drops": self.drops,
        }


@dataclass(frozen=True)
class Redundancy:
    """The candidate layers of one model at one moment, against chance."""

    layers: list[LayerRedundancy]
    adaptive: bool  # the default rule, which drops only above chance

    @property
    def nothing_to_drop(self) -> bool:
        """The adaptive rule drops no filter from these weights (no layer above chance by enough)."""
        return self.adaptive and all(layer.drops == 0 for layer in self.layers)

    def with_means(self, means: Mapping[str, float], config: ReprConfig) -> Redundancy:
        """The same layers with other mean scores (a later epoch's, from the training history)."""
        return Redundancy(
            [_layer(lr.name, lr.filters, means[lr.name], lr.chance, config) for lr in self.layers if lr.name in means],
            config.adaptive,
        )

    def to_dict(self) -> dict:
        return {
            "adaptive": self.adaptive,
            "nothing_to_drop": self.nothing_to_drop,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def watched_layers(model: nn.Module, config: ReprConfig, graph: ModelGraph | None = None) -> list[ConvLayer]:
    """The conv layers `config` lets lose filters (its layer options and the model's graph: output
    layers and shared convs keep every filter); `graph`: the model's, when already traced."""
    model = unwrap(model)
    if graph is None:
        graph = ModelGraph.try_trace(model)
    layers = convs_from_module(model)
    return candidate_layers(layers, config, fixed=None if graph is None else fixed_layers(graph))[0]


def live_means(layers: list[ConvLayer]) -> dict[str, float]:
    """Layer -> the mean score of its live filters now (one Gram matrix per layer)."""
    with torch.no_grad():
        return {s.layer.name: _live_mean(s) for s in score_layers(layers)}


def assess(model: nn.Module, config: ReprConfig, graph: ModelGraph | None = None) -> Redundancy:
    """The candidate layers of `model` as they are now, against chance, and what `config`'s rule
    would drop from them."""
    with torch.no_grad():
        scored = score_layers(watched_layers(model, config, graph))
    return Redundancy(
        [_layer(s.layer.name, s.layer.filters, _live_mean(s), s.chance, config) for s in scored], config.adaptive
    )


def _live_mean(s: LayerScores) -> float:
    dead = set(s.dead)
    live = [v for i, v in enumerate(s.scores.tolist()) if i not in dead]
    return sum(live) / len(live) if live else 0.0


def _layer(name: str, filters: int, mean: float, chance: float, config: ReprConfig) -> LayerRedundancy:
    drops = min(excess_quota(mean, chance, filters), max(0, filters - config.min_keep)) if config.adaptive else None
    return LayerRedundancy(name, filters, mean, chance, drops)
