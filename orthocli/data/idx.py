"""MNIST / Fashion-MNIST IDX folders: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte` and, for
the test set, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`; each optionally `.gz` (some
mirrors write `train-images.idx3-ubyte`). An IDX file is a magic number (0, 0, dtype code, number
of dims), the big-endian uint32 size of each dim, then the values, big-endian.

`load_idx` reads a folder's sets whole; `open_idx` gives `IdxSource`s, which read the labels up
front and each image at its offset when it is needed (a `.gz` file cannot be read at an offset: it
is decompressed once and its bytes kept, 47 MB for MNIST's training images)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from orthocli.data.checks import Arrays, as_tensor, class_labels, empty_message, make_arrays
from orthocli.data.source import OffsetReader, Source
from orthocli.errors import DataError, first_line

IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"


def idx_file(root: Path, stem: str) -> Path | None:
    """The file of `root` for the IDX name `stem` (also `.gz`, also with `.idx` for `-idx`), or None."""
    for name in (stem, stem.replace("-idx", ".idx")):  # some mirrors write train-images.idx3-ubyte
        for cand in (root / name, root / (name + ".gz")):
            if cand.is_file():
                return cand
    return None


def is_idx_folder(root: Path) -> bool:
    """Does `root` hold MNIST's training images or labels?"""
    return idx_file(root, TRAIN_IMAGES) is not None or idx_file(root, TRAIN_LABELS) is not None


def idx_pair(root: Path, prefix: str, required: bool) -> tuple[Path, Path] | None:
    """The images and labels files of `prefix` (train, t10k) in `root`; None when neither is there
    and they are not `required`; DataError when one of them is missing."""
    images, labels = idx_file(root, f"{prefix}-images-idx3-ubyte"), idx_file(root, f"{prefix}-labels-idx1-ubyte")
    if images is None and labels is None and not required:
        return None
    if images is None or labels is None:
        lack = f"{prefix}-images-idx3-ubyte" if images is None else f"{prefix}-labels-idx1-ubyte"
        raise DataError(f"{root}: MNIST folder without {lack}(.gz); add it or re-download the set")
    return images, labels


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """A whole IDX file of `ndim` dims, in native byte order."""
    raw = _file_bytes(path)
    dims, dtype, offset = _header(path, raw, len(raw), ndim)
    return np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def load_idx(root: Path) -> tuple[Arrays, Arrays | None]:
    """The training set of the IDX folder `root` and its t10k test set (or None), read whole."""
    return _load_pair(root, "train", True), _load_pair(root, "t10k", False)


def open_idx(root: Path) -> tuple[IdxSource, IdxSource | None]:
    """The training set of the IDX folder `root` and its t10k test set (or None), read image by image."""
    train = IdxSource(*idx_pair(root, "train", True))
    test = idx_pair(root, "t10k", False)
    return train, (IdxSource(*test) if test is not None else None)


def _load_pair(root: Path, prefix: str, required: bool) -> Arrays | None:
    pair = idx_pair(root, prefix, required)
    if pair is None:
        return None
    images, labels = pair
    return make_arrays(read_idx(images, 3), read_idx(labels, 1), images, "images", "labels")


def _file_bytes(path: Path) -> bytes:
    """The bytes of `path`, decompressed if its name ends in `.gz`."""
    try:
        return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({first_line(e)}); re-download it") from None


def _header(path: Path, head: bytes, total: int, ndim: int) -> tuple[tuple[int, ...], np.dtype, int]:
    """(dims, big-endian dtype, offset of the values) of an IDX file of `total` bytes starting with
    `head` (at least its header, when the file is that long); DataError unless it is an IDX file
    of `ndim` dims holding as many values as its header says."""
    if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {head[:4].hex() or 'none'}); re-download it")
    if head[3] != ndim:
        raise DataError(f"{path}: IDX file with {head[3]} dims, expected {ndim}; are the file names swapped?")
    offset = 4 + 4 * ndim
    if len(head) < offset:
        raise DataError(f"{path}: truncated IDX header; re-download it")
    dims = struct.unpack(f">{ndim}I", head[4:offset])
    dtype = np.dtype(IDX_DTYPES[head[2]])
    if total - offset != int(np.prod(dims)) * dtype.itemsize:
        raise DataError(
            f"{path}: header says {'x'.join(map(str, dims))} values but the file holds {total - offset} data bytes; "
            "it is truncated or damaged, re-download it"
        )
    return dims, dtype, offset


class IdxSource(Source):
    """MNIST / Fashion-MNIST IDX images (N, H, W), each read at its offset (`.gz`: from the
    decompressed bytes, kept in memory)."""

    def __init__(self, images: Path, labels: Path) -> None:
        self.where = str(images)
        if images.suffix == ".gz":
            self._bytes: bytes | None = _file_bytes(images)
            head, total = self._bytes[:16], len(self._bytes)
            self._reader = None
        else:
            self._bytes = None
            with open(images, "rb") as f:
                head = f.read(16)
            total = images.stat().st_size
            self._reader = OffsetReader(images)
        (n, h, w), self.dtype, self.offset = _header(images, head, total, 3)
        self.sample_bytes = h * w * self.dtype.itemsize
        y = as_tensor(read_idx(labels, 1), labels, "labels")
        if len(y) != n:
            raise DataError(f"{images}: has {n} samples but '{labels.name}' has {len(y)} labels; they must match")
        if n == 0:
            raise DataError(empty_message(images, "images", (n, h, w)))
        self.labels = class_labels(y, labels, "labels")
        self.channels, self.spatial_shape = 1, (h, w)

    def read(self, i: int) -> torch.Tensor:
        offset, size = self.offset + i * self.sample_bytes, self.sample_bytes
        raw = self._bytes[offset : offset + size] if self._bytes is not None else self._reader.read(offset, size)
        a = np.frombuffer(raw, dtype=self.dtype).reshape(1, *self.spatial_shape)
        if self.dtype == np.uint8:
            return torch.from_numpy(a.copy())
        return torch.from_numpy(a.astype(np.float32))
