"""Choosing which filters to drop (step 3 of the method). Pure: scores in, indices out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from orthocli.droprule import DEFAULT_DROP


@dataclass(frozen=True)
class DropRule:
    """How many filters to drop and how to rank them.

    ratio: fraction of the candidate filters to drop (cut by count, so ties never change it).
    threshold: instead of a ratio, drop every filter whose score is above this value.
    scope: "layer" drops `ratio` of each layer; "global" ranks all candidate filters of the network
           together (the authors' choice).
    The defaults are the one default rule (`droprule.DEFAULT_DROP`).
    min_keep: filters every layer keeps, whatever the ranking says.
    """

    ratio: float | None = DEFAULT_DROP.ratio
    threshold: float | None = None
    scope: str = DEFAULT_DROP.scope
    min_keep: int = DEFAULT_DROP.min_keep

    def __post_init__(self) -> None:
        if (self.ratio is None) == (self.threshold is None):
            raise ValueError("give exactly one of ratio and threshold")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise ValueError(f"ratio must be between 0 and 1 (exclusive), got {self.ratio}")
        if self.scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {self.scope!r}")
        if self.min_keep < 1:
            raise ValueError(f"min_keep must be at least 1, got {self.min_keep}")


def _ranked(scores: Sequence[torch.Tensor], layers: Sequence[int]) -> list[tuple[float, int, int]]:
    """(score, layer, filter) from most to least redundant; ties break by layer, then filter."""
    items = [(-s, li, f) for li in layers for f, s in enumerate(scores[li].tolist())]
    items.sort()
    return [(-neg, li, f) for neg, li, f in items]


def choose_drops(scores: Sequence[torch.Tensor], rule: DropRule) -> list[torch.Tensor]:
    """Indices (sorted, int64) of the filters to drop in each layer, one tensor per layer."""
    sizes = [len(s) for s in scores]
    room = [max(0, n - rule.min_keep) for n in sizes]  # most each layer may lose
    dropped: list[list[int]] = [[] for _ in scores]

    def take(candidates: list[tuple[float, int, int]], quota: int | None) -> None:
        for s, li, f in candidates:
            if quota is not None and quota <= 0:
                break
            if rule.threshold is not None and not s > rule.threshold:
                break
            if len(dropped[li]) < room[li]:
                dropped[li].append(f)
                if quota is not None:
                    quota -= 1

    if rule.scope == "global":
        quota = None if rule.ratio is None else math.floor(rule.ratio * sum(sizes) + 1e-9)
        take(_ranked(scores, range(len(scores))), quota)
    else:
        for li, n in enumerate(sizes):
            quota = None if rule.ratio is None else math.floor(rule.ratio * n + 1e-9)
            take(_ranked(scores, [li]), quota)
    return [torch.tensor(sorted(d), dtype=torch.long) for d in dropped]
