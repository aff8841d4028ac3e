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


def gate_failures(results: list[LayerScores], bound: float) -> list[LayerScores]:
    """Layers whose mean score is above `bound`."""
    return [r for r in results if r.mean > bound]
