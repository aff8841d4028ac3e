"""Per-layer redundancy reports built from orthogonality scores: what `score` shows and gates on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orthocli.errors import CheckpointError
from orthocli.network.layers import ConvLayer

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass
class LayerScores:
    layer: ConvLayer
    scores: np.ndarray | torch.Tensor  # (J,), output-channel order; the kind of the layer's weight
    dead: list[int]  # all-zero filters

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def max(self) -> float:
        return float(self.scores.max())

    @property
    def chance(self) -> float:
        """The mean score Gaussian random filters of this shape would have."""
        from orthocli.method.orthogonality import chance_score

        return chance_score(self.layer.fan_in, self.layer.filters // self.layer.groups)

    @property
    def times_chance(self) -> float | None:
        """mean / chance: how many times random filters' level the layer's mean is (above 1: more
        redundant than random filters of its shape); None for a chance of 0."""
        chance = self.chance
        return self.mean / chance if chance > 0 else None

    @property
    def overcomplete(self) -> bool:
        """More filters per group than dimensions: the filters cannot all be orthogonal."""
        return self.layer.filters // self.layer.groups > self.layer.fan_in

    def to_json(self) -> dict:
        layer = self.layer
        return {
            "name": layer.name,
            "key": layer.key,
            "shape": list(layer.weight.shape),
            "filters": layer.filters,
            "groups": layer.groups,
            "transposed": layer.transposed,
            "layout_known": layer.known,
            "overcomplete": self.overcomplete,
            "mean": self.mean,
            "max": self.max,
            "chance": self.chance,  # the mean Gaussian random filters of this shape would score
            "times_chance": self.times_chance,  # mean / chance
            "dead": self.dead,
            "scores": self.scores.tolist(),
        }


def score_layer(layer: ConvLayer) -> LayerScores:
    from orthocli.method.orthogonality import DEAD_SCORE, orthogonality_scores

    if layer.filters == 0 or layer.fan_in == 0:
        raise CheckpointError(
            f"layer '{layer.name}' has an empty weight (shape {list(layer.weight.shape)}); exclude it with --exclude"
        )
    try:
        scores = orthogonality_scores(layer.weight, groups=layer.groups, transposed=layer.transposed)
    except ValueError as e:
        raise CheckpointError(f"layer '{layer.name}': {e}; the checkpoint is damaged or training diverged") from None
    # Only an all-zero filter scores DEAD_SCORE: a live one scores at most (J-1)/J.
    dead = [f for f, s in enumerate(scores.tolist()) if s == DEAD_SCORE]
    return LayerScores(layer, scores, dead)


def score_layers(layers: list[ConvLayer]) -> list[LayerScores]:
    return [score_layer(layer) for layer in layers]


def most_redundant(results: list[LayerScores], k: int) -> list[tuple[str, int, float]]:
    """The k highest-scoring filters across all layers: (layer name, filter index, score).
    Ties break by layer order, then filter index, so the list is deterministic."""
    flat = [(-s, li, f) for li, r in enumerate(results) for f, s in enumerate(r.scores.tolist())]
    flat.sort()
    return [(results[li].layer.name, f, -neg) for neg, li, f in flat[:k]]


def rule_left_out(layers: list[ConvLayer]) -> dict[str, str]:
    """The layers the drop rule never considers whatever the model's graph, with why: the first
    conv layer (`skip_first`, the default) and convs with one filter per group (depthwise), as
    `drops.candidate_layers` decides without torch. Which other layers it leaves alone (an output
    head, a shared conv) needs the model's graph, which `score` does not build."""
    why = {}
    if layers:
        why[layers[0].name] = "the drop rule leaves the first conv layer alone (--skip-first, the default)"
    for layer in layers:
        if layer.groups > 1 and layer.filters == layer.groups:
            why.setdefault(layer.name, "the drop rule leaves a conv of one filter per group (depthwise) alone")
    return why


def above_chance(
    results: list[LayerScores], k: int, left_out: dict[str, str] | None = None
) -> list[tuple[str, int, float, float]]:
    """The k filters furthest above their layer's chance level (score / chance, highest first),
    from the layers the drop rule considers (not in `left_out`), and only those above it: (layer
    name, filter index, score, score / chance). Ties break by layer order, then filter index."""
    left_out = left_out or {}
    flat = []
    for li, r in enumerate(results):
        chance = r.chance
        if r.layer.name in left_out or chance <= 0:
            continue
        flat += [(-s / chance, li, f, s) for f, s in enumerate(r.scores.tolist()) if s > chance]
    flat.sort()
    return [(results[li].layer.name, f, s, -neg) for neg, li, f, s in flat[:k]]


def gate_failures(results: list[LayerScores], bound: float) -> list[LayerScores]:
    """Layers whose mean score is above `bound`."""
    return [r for r in results if r.mean > bound]
