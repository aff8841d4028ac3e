"""Which of a layer's filters a cycle drops, once the drop rule (`drops.drop_counts`) has said how
many: a ranking orders the filters from the first to drop to the last, and the first ones go.

- `Orthogonality`: the most redundant first, by the method's scores (ties: the lower index first).
- `Random`: a seeded random order, the control that asks whether the ranking matters at all
  (`orthocli train --baseline --control random`, `ReprConfig(ranking="random")`).
- `LeastRedundant`: the least redundant first, an ablation.

A ranking is any object with `order(scores, seed)`; `BY_NAME` holds the built-in ones under the
names `ReprConfig.ranking` takes (`config.RANKINGS`). Pure: tensors and integer seeds in, tensors out.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Ranking(Protocol):
    def order(self, scores: torch.Tensor, seed: int) -> torch.Tensor:
        """All filter indices of one layer (int64), the first to drop first. `scores`: the layer's
        orthogonality scores (higher = more redundant); `seed`: this layer's in this cycle."""
        ...


class Orthogonality:
    """The method: the most redundant filters first."""

    def order(self, scores: torch.Tensor, seed: int) -> torch.Tensor:
        return torch.argsort(-scores.to(torch.float64), stable=True)


class Random:
    """As many filters as the method drops, chosen at random (seeded, so a run repeats and resumes)."""

    def order(self, scores: torch.Tensor, seed: int) -> torch.Tensor:
        return torch.randperm(len(scores), generator=torch.Generator().manual_seed(seed))


class LeastRedundant:
    """The least redundant filters first: the opposite of the method."""

    def order(self, scores: torch.Tensor, seed: int) -> torch.Tensor:
        return torch.argsort(scores.to(torch.float64), stable=True)


BY_NAME: dict[str, Ranking] = {"orthogonality": Orthogonality(), "random": Random(), "least": LeastRedundant()}
