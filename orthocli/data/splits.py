"""Splitting a set and the normalisation statistics, pure tensor math (tensors in, tensors out):
the stratified, seeded choice of training and validation samples that the in-memory and the
streamed data share (so a seed picks the same samples from either), per-channel mean and std,
normalising with them."""

from __future__ import annotations

import torch

from orthocli.errors import UsageError

STD_FLOOR = 1e-8  # a constant channel is divided by this instead of 0


def _allocate(counts: list[int], total: int, low: list[int], high: list[int]) -> list[int]:
    """Split `total` over classes in proportion to `counts` (largest remainder), each within [low, high]."""
    n = sum(counts)
    exact = [total * c / n for c in counts]
    take = [min(max(int(e), lo), hi) for e, lo, hi in zip(exact, low, high)]
    idx = range(len(counts))
    while sum(take) > total and any(take[i] > low[i] for i in idx):
        i = max((i for i in idx if take[i] > low[i]), key=lambda i: (take[i] - exact[i], -i))
        take[i] -= 1
    while sum(take) < total and any(take[i] < high[i] for i in idx):
        i = max((i for i in idx if take[i] < high[i]), key=lambda i: (exact[i] - take[i], -i))
        take[i] += 1
    return take


def stratified_pick(
    y: torch.Tensor, count: int, generator: torch.Generator, *, min_pick: int = 0, min_left: int = 0
) -> torch.Tensor:
    """Sorted indices of `count` samples (as near as the bounds allow) drawn from each class in
    proportion to its size, taking at least `min_pick` and leaving at least `min_left` of every class."""
    members = [torch.nonzero(y == c).flatten() for c in torch.unique(y)]
    counts = [len(m) for m in members]
    low = [min(min_pick, c) for c in counts]
    high = [max(c - min_left, 0) for c in counts]
    take = _allocate(counts, count, low, high)
    picked = [m[torch.randperm(len(m), generator=generator)[:k]] for m, k in zip(members, take)]
    return torch.sort(torch.cat(picked)).values


def split_indices(
    y: torch.Tensor, *, val_fraction: float, seed: int, max_samples: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, validation) indices into labels `y`: with `max_samples`, first a stratified,
    seeded subsample of that many; then a stratified validation part of `val_fraction` of it (at
    least one sample when the fraction is above 0; every class keeps a training sample). One rule
    for the in-memory and the streamed data, so a seed picks the same samples from either."""
    generator = torch.Generator().manual_seed(seed)
    pool = torch.arange(len(y))
    if max_samples is not None and max_samples < len(y):
        n_present = len(torch.unique(y))
        if max_samples < n_present:
            raise UsageError(f"max samples is {max_samples} but the data has {n_present} classes; use at least that")
        pool = stratified_pick(y, max_samples, generator, min_pick=1)
    n_val = round(val_fraction * len(pool))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    val_rel = stratified_pick(y[pool], n_val, generator, min_left=1)
    keep = torch.ones(len(pool), dtype=torch.bool)
    keep[val_rel] = False
    return pool[keep.nonzero().flatten()], pool[val_rel]


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (population, floored at STD_FLOOR) of (N, C, *spatial) data."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
    return flat.mean(1), flat.std(1, correction=0).clamp_min(STD_FLOOR)


def normalise(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(N, C, *spatial) `x` less `mean`, divided by `std` (per channel, float64 (C,)), in float64; float32."""
    view = (1, -1) + (1,) * (x.dim() - 2)
    return ((x.to(torch.float64) - mean.view(view)) / std.view(view)).to(torch.float32)
