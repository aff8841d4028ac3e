"""Every seed orthocli derives, in one place: the global RNGs of a run (`set_seed`) and the
independent streams drawn from a run's seed, so a run repeats exactly and a resumed one continues
exactly, whatever else happened in between.

Streams of a run seeded S (`sub_seed(S, stream, index)`): 1 the data order of epoch e (and more
passes of it, stream 3), 2 the re-initialisation of cycle c (`reinit_seed`), 4 the random ranking
of cycle c (`ranking_seed`; layer i of that cycle draws sub-seed i of it). `--augment` seeds each
sample of each epoch from (seed, epoch, sample) (`sample_seed`), so loader workers never share a stream.
"""

from __future__ import annotations

import random

import numpy as np
import torch

DATA_ORDER, REINIT, MORE_PASSES, RANKING = 1, 2, 3, 4
_M64 = (1 << 64) - 1


def set_seed(seed: int) -> None:
    """The one place that seeds the global RNGs (model init, dropout)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sub_seed(seed: int, stream: int, index: int) -> int:
    """An independent seed for (run seed, stream, index)."""
    return (seed * 1_000_003 + stream * 10_007 + index) % (2**63 - 1)


def reinit_seed(seed: int, cycle: int) -> int:
    """The seed of the generator that re-introduces the filters of cycle `cycle` (1-based) of a run
    seeded `seed`. `orthocli reinit --seed S --cycle K` uses it too, so the steps run one by one
    re-initialise to the values `orthocli train --seed S` gives in its cycle K."""
    return sub_seed(seed, REINIT, cycle)


def ranking_seed(seed: int, cycle: int) -> int:
    """The seed a random ranking draws cycle `cycle`'s filters from, in a run seeded `seed`."""
    return sub_seed(seed, RANKING, cycle)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A seed for one sample's augmentation in one epoch (splitmix64 over the three values)."""
    h = 0
    for v in (seed, epoch, index):
        h = (h ^ (v & _M64)) + 0x9E3779B97F4A7C15 & _M64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & _M64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _M64
        h ^= h >> 31
    return h & ((1 << 63) - 1)
