"""Samples read one at a time: `Source`, the base of every format's per-sample reader (a
`torch.utils.data.Dataset`), and `OffsetReader`, the bytes at an offset of a file, for the formats
that store fixed-size records (CIFAR-10, IDX)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from orthocli.errors import DataError


class Source(Dataset):
    """Samples read one at a time: `read(i)` is sample i as stored, (C, *spatial), uint8 or float32;
    `labels` (N,) int64 are read up front (they are small and decide the split)."""

    labels: torch.Tensor
    channels: int
    spatial_shape: tuple[int, ...]
    where: str  # for messages
    pad: torch.Tensor | None = None  # per channel, what an augmented crop pads with (None: 0, as stored)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.read(int(i)), int(self.labels[i])


class OffsetReader:
    """Reads bytes at an offset of a file, with a descriptor opened once per process (DataLoader
    workers are separate processes: none inherits or pickles another's descriptor)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = -1

    def read(self, offset: int, size: int) -> bytes:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        out = os.pread(self._fd, size, offset)
        if len(out) != size:
            raise DataError(f"{self.path}: ends early (truncated while training?); re-download it")
        return out

    def __getstate__(self) -> dict:
        return {"path": self.path, "_fd": None, "_pid": -1}

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
