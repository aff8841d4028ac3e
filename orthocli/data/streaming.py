"""Streamed splits and the batches the training loop draws. `Streamed` is one split of a `Source`
(samples read one at a time), normalised per batch on the training device. `train_batches()` and
`eval_batches()` read it through a `torch.utils.data.DataLoader` with worker processes (their
number: `default_workers()`), kept alive from pass to pass, and pinned memory on CUDA;
`distributed_batches()` gives one rank's batches under torchrun (a `DistributedSampler`
reshuffled with `set_epoch`). `sample_stats()` computes the normalisation statistics from a
bounded sample of a split, one batch in memory at a time.

Augmentation (`--augment`): a random crop of the sample padded by an eighth of its size on every
side (4 pixels for 32x32) and a horizontal flip with probability 1/2, the usual CIFAR recipe. The
draws come from a torch generator seeded by (seed, epoch, sample), so every worker draws
differently, a seeded run repeats exactly (and so does a resumed one), and the number of workers
does not change the result.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from orthocli.data.checks import Arrays
from orthocli.data.source import Source
from orthocli.data.splits import STD_FLOOR
from orthocli.errors import DataError
from orthocli.seeding import sample_seed

NORM_SAMPLES = 1000  # training samples the normalisation statistics are computed from (all if fewer)
MAX_AUTO_WORKERS = 4  # --workers default: the CPU cores this process may use, at most this many
EVAL_BATCH = 256  # samples per batch when a streamed split is evaluated


def default_workers(local_world_size: int = 1) -> int:
    """Loader processes per training process: its share of the CPU cores, 1 to MAX_AUTO_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores // max(local_world_size, 1)))


# ---------------------------------------------------------------------------------------------
# Augmentation


def augment(x: torch.Tensor, generator: torch.Generator, fill: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop of (C, H, W) `x` padded by max(1, round(min(H, W) / 8)) on every side (with
    `fill` per channel, else 0), then a horizontal flip with probability 1/2."""
    c, h, w = x.shape
    pad = max(1, round(min(h, w) / 8))
    dy, dx, flip = torch.randint(0, 2 * pad + 1, (3,), generator=generator).tolist()
    padded = x.new_zeros((c, h + 2 * pad, w + 2 * pad))
    if fill is not None:
        padded += fill.to(x.dtype).view(c, 1, 1)
    padded[:, pad : pad + h, pad : pad + w] = x
    out = padded[:, dy : dy + h, dx : dx + w]
    return (out.flip(-1) if flip % 2 else out).contiguous()


# ---------------------------------------------------------------------------------------------
# Splits and batches


@dataclass
class Streamed:
    """One split of a data set read from disk: the samples `indices` of `source`. Batches are
    normalised on the training device with `mean` and `std` (None: the source's values are already
    normalised); with `augment` (training only) each sample is cropped and flipped as it is read."""

    source: Source
    indices: torch.Tensor  # int64 positions in source
    mean: torch.Tensor | None  # float64 (C,)
    std: torch.Tensor | None
    workers: int = 0  # loader processes (0: read in the training process)
    augment: bool = False
    seed: int = 0  # seeds the augmentation (with the epoch and the sample)
    keep_workers: bool = False  # loaders (and their worker processes) live on from pass to pass
    _scale: dict = field(default_factory=dict, repr=False, compare=False)  # device -> (mean, std) there
    _loaders: dict = field(default_factory=dict, repr=False, compare=False)  # (kind, device type) -> loader

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def y(self) -> torch.Tensor:
        return self.source.labels[self.indices]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.mean is None:
            return x
        if x.device not in self._scale:
            view = (1, -1) + (1,) * (x.dim() - 2)
            self._scale[x.device] = (
                self.mean.to(torch.float32).view(view).to(x.device),
                self.std.to(torch.float32).view(view).to(x.device),
            )
        mean, std = self._scale[x.device]
        return (x - mean) / std


class _Items(Dataset):
    """What a DataLoader indexes: positions in a split, or (position, epoch) when augmenting."""

    def __init__(self, split: Streamed, fill: torch.Tensor | None) -> None:
        self.source, self.indices, self.seed, self.fill = split.source, split.indices, split.seed, fill

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        pos, epoch = key if isinstance(key, tuple) else (key, None)
        i = int(self.indices[pos])
        x = self.source.read(i)
        if epoch is not None:
            x = augment(x, torch.Generator().manual_seed(sample_seed(self.seed, epoch, i)), self.fill)
        return x, self.source.labels[i]


class _Passes:
    """A batch sampler whose batches are set before each pass: so one DataLoader, and with
    `keep_workers` its worker processes, serves every epoch (starting workers costs about 0.2 s)."""

    def __init__(self) -> None:
        self.lists: list[list] = []

    def __iter__(self):
        return iter(self.lists)

    def __len__(self) -> int:
        return len(self.lists)


def _loader(split: Streamed, kind: str, batch_lists: list[list], device: torch.device, fill=None) -> DataLoader:
    """The split's DataLoader for `kind` of pass on `device`, its batches set to `batch_lists`."""
    key = (kind, device.type)
    if key not in split._loaders or not split.keep_workers:
        passes = _Passes()
        split._loaders[key] = DataLoader(
            _Items(split, fill),
            batch_sampler=passes,
            num_workers=split.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=split.keep_workers and split.workers > 0,
        )
    loader = split._loaders[key]
    loader.batch_sampler.lists = batch_lists
    return loader


def _batches_on(loader: DataLoader, split: Streamed, device: torch.device):
    """(x, y) on `device`, x normalised; a DataError raised in a worker keeps its one line."""
    try:
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            yield split.normalise(x), y.to(device, non_blocking=True)
    except DataError as e:
        raise DataError(_worker_message(str(e))) from None


def _worker_message(text: str) -> str:
    """The original message of an error re-raised from a DataLoader worker (which adds a traceback)."""
    marker = "DataError: "
    lines = [ln for ln in text.splitlines() if marker in ln]
    return lines[-1].split(marker, 1)[1] if lines else text.splitlines()[0]


def distributed_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int, world_size: int, min_steps: int = 0
) -> list[list[int]]:
    """This rank's batches of one epoch under torchrun: `DistributedSampler` (reshuffled by
    `set_epoch`, every rank the same number of samples) cut into batches of
    ceil(batch_size / world_size), so a step over all ranks sees about `batch_size` samples. A last
    batch of one sample (BatchNorm) joins the one before, on every rank alike. As in one process
    (`training.loop.batches`), more shuffled passes follow until there are `min_steps` batches; every
    rank makes as many, so the ranks step together."""
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    per_rank = max(1, math.ceil(batch_size / world_size))

    def one_pass(p: int) -> list[list[int]]:
        sampler.set_epoch(epoch if p == 0 else epoch * 100_003 + p)
        order = list(sampler)
        one = [order[k : k + per_rank] for k in range(0, len(order), per_rank)]
        if len(one) > 1 and len(one[-1]) < 2:
            one[-2:] = [one[-2] + one[-1]]
        return one

    return repeat_passes(one_pass, min_steps)


def repeat_passes(one_pass: Callable[[int], list], min_steps: int) -> list:
    """The batches of one epoch: pass 0, then passes 1, 2, ... until there are `min_steps` batches."""
    parts: list = []
    p = 0
    while p == 0 or len(parts) < min_steps:
        parts += one_pass(p)
        p += 1
    return parts


def train_batches(split: Streamed, batch_lists: list[list[int]], epoch: int, device: torch.device):
    """The training batches of one epoch, in the order `batch_lists` gives (positions in the split)."""
    if split.augment:
        batch_lists = [[(int(p), epoch) for p in b] for b in batch_lists]
    else:
        batch_lists = [[int(p) for p in b] for b in batch_lists]
    kind = "augment" if split.augment else "train"
    return _batches_on(_loader(split, kind, batch_lists, device, split.source.pad), split, device)


def eval_batches(split: Streamed, device: torch.device, batch_size: int = EVAL_BATCH):
    """The whole split in order, without augmentation."""
    lists = [list(range(k, min(k + batch_size, len(split)))) for k in range(0, len(split), batch_size)]
    return _batches_on(_loader(split, f"eval{batch_size}", lists, device), split, device)


def head(split: Arrays | Streamed, k: int) -> torch.Tensor:
    """The first `k` samples of a split, normalised (to try the model on)."""
    if isinstance(split, Arrays):
        return split.x[:k]
    k = min(k, len(split))
    x = torch.stack([split.source.read(int(i)) for i in split.indices[:k]])
    return split.normalise(x)


# ---------------------------------------------------------------------------------------------
# Normalisation statistics


def sample_stats(
    source: Source, indices: torch.Tensor, seed: int, workers: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (population, floored at STD_FLOOR) over at most NORM_SAMPLES of the
    samples `indices` (all of them if fewer; else a seeded random choice), read in batches and merged
    in float64 (Chan et al.), so memory holds one batch."""
    if len(indices) > NORM_SAMPLES:
        pick = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))[:NORM_SAMPLES]
        indices = indices[torch.sort(pick).values]
    split = Streamed(source, indices, None, None, workers=workers)
    count, mean = 0, torch.zeros(source.channels, dtype=torch.float64)
    m2 = torch.zeros_like(mean)
    for x, _ in eval_batches(split, torch.device("cpu"), batch_size=64):
        flat = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
        n_b, mean_b = flat.shape[1], flat.mean(1)
        m2_b = ((flat - mean_b[:, None]) ** 2).sum(1)
        delta, total = mean_b - mean, count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    return mean, (m2 / count).sqrt().clamp_min(STD_FLOOR)
