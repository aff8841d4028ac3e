"""Which of a layer's filters a cycle drops, once the drop rule (`drops.drop_counts`) has said how
many: a ranking orders the filters from the first to drop to the last, and the first ones go.

- `Orthogonality`: the most redundant first, by the method's scores (ties: the lower index first).
- `Random`: a seeded random order, the control that asks whether the ranking matters at all
  (`orthocli train --baseline --control random`, `ReprConfig(ranking="random")`).
- `LeastRedundant`: the least redundant first, an ablation.
- `L1`: the smallest filter-weight L1 norm first (Li et al. 2017).
- `BnScale`: the smallest |scale| of the BatchNorm that follows the conv first (Liu et al. 2017).
- `Taylor`: the smallest mean |activation x gradient| of the filter's output channel first, over
  the batches of the last standard epoch before the drop (Molchanov et al. 2017).
- `Activation`: the smallest mean |activation| of the channel first, over the same batches.

A ranking is any object with `order(layer: LayerFacts) -> indices` (the `Ranking` protocol); an
optional `needs` (a set of "bn_scale", "activation", "taylor") says what it reads besides the scores
and weights, so the controller gathers it (`filter_statistics.FilterStatistics`) or refuses where it
cannot. Every ordering is stable: ties keep the lower index first. `BY_NAME` holds the built-in
ones under the names `ReprConfig.ranking` takes (`config.RANKINGS`). Pure: tensors in, tensors out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch

from orthocli.errors import UsageError

# What a ranking may need besides a layer's scores and weights (`Ranking.needs`).
BN_SCALE, ACTIVATION, TAYLOR = "bn_scale", "activation", "taylor"
GATHERED = (ACTIVATION, TAYLOR)  # gathered from training batches (`filter_statistics`)


@dataclass(frozen=True)
class LayerFacts:
    """What a ranking knows of one candidate layer when its filters are chosen."""

    name: str  # the conv layer's name in the model
    scores: torch.Tensor  # orthogonality scores, one per filter (higher = more redundant)
    weight: torch.Tensor  # the conv weight, filters along dim 0 (dim 1 for a transposed conv: see `filter_rows`)
    generator: torch.Generator  # seeded by (seed, cycle, layer): a seeded choice repeats and resumes
    bn_scale: torch.Tensor | None = None  # the following BatchNorm's scale (gamma), one per filter; None: none
    # statistic name ("activation", "taylor") -> one float64 value per filter, from the batches of the
    # last standard epoch before this drop; empty where none were gathered
    stats: Mapping[str, torch.Tensor] = field(default_factory=dict)
    transposed: bool = False  # a ConvTranspose: filters along dim 1 of `weight`

    def filter_rows(self) -> torch.Tensor:
        """The weight as one row per filter (float64)."""
        w = self.weight.detach().to(torch.float64)
        if self.transposed:
            w = w.transpose(0, 1)
        return w.reshape(w.shape[0], -1)


class Ranking(Protocol):
    def order(self, layer: LayerFacts) -> torch.Tensor:
        """All filter indices of one layer (int64), the first to drop first."""
        ...


def smallest_first(values: torch.Tensor) -> torch.Tensor:
    """Indices from the smallest value to the largest (stable: ties keep the lower index first)."""
    return torch.argsort(values.detach().to(torch.float64).cpu(), stable=True)


class Orthogonality:
    """The method: the most redundant filters first."""

    name = "orthogonality"

    def order(self, layer: LayerFacts) -> torch.Tensor:
        return smallest_first(-layer.scores)


class Random:
    """As many filters as the method drops, chosen at random (seeded, so a run repeats and resumes)."""

    name = "random"

    def order(self, layer: LayerFacts) -> torch.Tensor:
        return torch.randperm(len(layer.scores), generator=layer.generator)


class LeastRedundant:
    """The least redundant filters first: the opposite of the method."""

    name = "least"

    def order(self, layer: LayerFacts) -> torch.Tensor:
        return smallest_first(layer.scores)


class L1:
    """The smallest filter-weight L1 norm first (Li et al. 2017, "Pruning filters for efficient ConvNets")."""

    name = "l1"

    def order(self, layer: LayerFacts) -> torch.Tensor:
        return smallest_first(layer.filter_rows().abs().sum(dim=1))


class BnScale:
    """The smallest |scale| of the BatchNorm that follows the conv first (Liu et al. 2017, network slimming)."""

    name = "bn-scale"
    needs = frozenset({BN_SCALE})

    def order(self, layer: LayerFacts) -> torch.Tensor:
        if layer.bn_scale is None:
            raise UsageError(
                f"the bn-scale ranking reads the scale of the BatchNorm after each conv, and no BatchNorm with a"
                f" scale follows {layer.name}; leave it out with --exclude, or choose another ranking"
            )
        return smallest_first(layer.bn_scale.abs())


class _Gathered:
    """A statistic gathered from the batches of the last standard epoch before the drop, smallest first."""

    name = ""
    statistic = ""

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({self.statistic})

    def order(self, layer: LayerFacts) -> torch.Tensor:
        values = layer.stats.get(self.statistic)
        if values is None:
            raise UsageError(no_data_message(self.name, layer.name))
        return smallest_first(values)


class Taylor(_Gathered):
    """The smallest mean |activation x gradient| of the filter's output channel first (Molchanov et
    al. 2017): the first-order estimate of the loss change if the channel were zero."""

    name = "taylor"
    statistic = TAYLOR


class Activation(_Gathered):
    """The smallest mean |activation| of the filter's output channel first."""

    name = "activation"
    statistic = ACTIVATION


def no_data_message(ranking: str, where: str) -> str:
    return (
        f"the {ranking} ranking reads statistics gathered from training batches (the last standard epoch before"
        f" each drop), and {where} has none: use it while training (orthocli train --control {ranking}, or RePr"
        " in your loop), or choose orthogonality, l1, bn-scale, random or least"
    )


BY_NAME: dict[str, Ranking] = {
    r.name: r for r in (Orthogonality(), Random(), LeastRedundant(), L1(), BnScale(), Taylor(), Activation())
}


def needs(ranking: Ranking) -> frozenset[str]:
    """What `ranking` reads besides scores and weights (its `needs`; none when it says nothing)."""
    return frozenset(getattr(ranking, "needs", ()) or ())


def ranking_name(ranking: Ranking) -> str:
    """How a drop record names a ranking: its `name`, else its class's."""
    return str(getattr(ranking, "name", "") or type(ranking).__name__)
