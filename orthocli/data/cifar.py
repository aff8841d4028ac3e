"""The CIFAR-10 binary folder: `data_batch_1.bin` .. `data_batch_5.bin` and `test_batch.bin` (the
test set), in the folder given or in `cifar-10-batches-bin` inside it. Each batch is a run of
records: one label byte, then a 3x32x32 image in CHW order.

`load_cifar` reads the batches whole; `open_cifar` gives `CifarSource`s, which read the labels up
front and each image at its offset when it is needed."""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch

from orthocli.data.checks import Arrays, make_arrays
from orthocli.data.source import OffsetReader, Source
from orthocli.errors import DataError

CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then a 3x32x32 image in CHW order


def cifar_dir(root: Path) -> Path | None:
    """The folder of `root` holding CIFAR-10 batches (`root` itself or its `cifar-10-batches-bin`), or None."""
    for base in (root, root / "cifar-10-batches-bin"):
        if any((base / f"data_batch_{i}.bin").is_file() for i in range(1, 6)) or (base / "test_batch.bin").is_file():
            return base
    return None


def batch_files(base: Path) -> tuple[list[Path], Path | None]:
    """The training batches of the CIFAR-10 folder `base` (at least one) and its test batch (or None)."""
    train = [base / f"data_batch_{i}.bin" for i in range(1, 6) if (base / f"data_batch_{i}.bin").is_file()]
    if not train:
        raise DataError(f"{base}: has test_batch.bin but no data_batch_*.bin training batches; add at least one")
    test = base / "test_batch.bin"
    return train, (test if test.is_file() else None)


def load_cifar(base: Path) -> tuple[Arrays, Arrays | None]:
    """The training batches of `base` (its `cifar_dir`), concatenated, and its test batch, read whole."""
    train_files, test_file = batch_files(base)
    parts = [_read_batch(b) for b in train_files]
    train = Arrays(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    return train, (_read_batch(test_file) if test_file is not None else None)


def open_cifar(base: Path) -> tuple[CifarSource, CifarSource | None]:
    """The training batches of `base` (its `cifar_dir`) and its test batch, read record by record."""
    train_files, test_file = batch_files(base)
    return CifarSource(train_files), (CifarSource([test_file]) if test_file is not None else None)


def _records(path: Path, size: int) -> int:
    """The number of records in the batch `path` of `size` bytes; DataError unless it is whole."""
    if size == 0 or size % CIFAR_RECORD:
        raise DataError(
            f"{path}: {size} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes each); "
            "re-download it"
        )
    return size // CIFAR_RECORD


def _read_batch(path: Path) -> Arrays:
    raw = np.fromfile(path, dtype=np.uint8)
    rec = raw.reshape(_records(path, raw.size), CIFAR_RECORD)
    return make_arrays(rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0], path)


class CifarSource(Source):
    """CIFAR-10 binary batches: records of one label byte and a 3x32x32 image, read at their offset."""

    def __init__(self, files: list[Path]) -> None:
        self.files = [OffsetReader(f) for f in files]
        self.where = str(files[0].parent)
        counts, labels = [], []
        for f in files:
            counts.append(_records(f, f.stat().st_size))
            labels.append(_labels(f))
        self.starts = np.cumsum([0, *counts]).tolist()
        self.labels = torch.from_numpy(np.concatenate(labels)).to(torch.int64)
        self.channels, self.spatial_shape = 3, (32, 32)

    def read(self, i: int) -> torch.Tensor:
        k = bisect.bisect_right(self.starts, i) - 1
        raw = self.files[k].read((i - self.starts[k]) * CIFAR_RECORD + 1, CIFAR_RECORD - 1)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(3, 32, 32)


def _labels(path: Path, chunk_records: int = 4096) -> np.ndarray:
    """The label byte of every record, read a chunk at a time (memory stays at one chunk)."""
    out = []
    with open(path, "rb") as f:
        while block := f.read(chunk_records * CIFAR_RECORD):
            out.append(np.frombuffer(block, dtype=np.uint8)[::CIFAR_RECORD].copy())
    return np.concatenate(out)
