"""Training data streamed from disk: folders read sample by sample through a `torch.utils.data`
pipeline, so memory does not grow with the number of samples.

- `ImageFolderSource`: `root/<class>/*.png|jpg|...`, each image decoded with Pillow when it is
  read (optionally resized and centre-cropped to `image_size`); only the headers are read up front
  (size and colour mode: the checks `data.py` makes, before any training).
- `CifarSource`: CIFAR-10 binary batches, each record read at its offset.
- `IdxSource`: MNIST IDX files, each image read at its offset (a `.gz` file cannot be read at an
  offset: it is decompressed once and its bytes kept, 47 MB for MNIST's training images).
- `TensorSource`: samples already in memory (an array file), for `--augment`.

`prepare()` is what `orthocli train` calls: array files (and folders with `in_memory=True`) take
`data.prepare`'s in-memory path unchanged; folders become `Streamed` splits chosen by the same rule
(`data.split_indices`), normalised per batch with per-channel statistics from at most
`NORM_SAMPLES` training samples. The training loop draws batches with `train_batches()` and
`eval_batches()`: a DataLoader with worker processes, pinned memory on CUDA and, under torchrun, a
`DistributedSampler` reshuffled with `set_epoch`.

Augmentation (`--augment`): a random crop of the sample padded by an eighth of its size on every
side (4 pixels for 32x32) and a horizontal flip with probability 1/2, the usual CIFAR recipe. The
draws come from a torch generator seeded by (seed, epoch, sample), so every worker draws
differently, a seeded run repeats exactly (and so does a resumed one), and the number of workers
does not change the result.
"""

from __future__ import annotations

import bisect
import gzip
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from orthocli import data as memory
from orthocli.data import CIFAR_RECORD, IDX_DTYPES, STD_FLOOR, Arrays, DataError, DataSplits, UsageError, builtin_name
from orthocli.errors import first_line

NORM_SAMPLES = 1000  # training samples the normalisation statistics are computed from (all if fewer)
MAX_AUTO_WORKERS = 4  # --workers default: the CPU cores this process may use, at most this many
EVAL_BATCH = 256  # samples per batch when a streamed split is evaluated
_M64 = (1 << 64) - 1


def default_workers(local_world_size: int = 1) -> int:
    """Loader processes per training process: its share of the CPU cores, 1 to MAX_AUTO_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cores // max(local_world_size, 1)))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A seed for one sample's augmentation in one epoch (splitmix64 over the three values)."""
    h = 0
    for v in (seed, epoch, index):
        h = (h ^ (v & _M64)) + 0x9E3779B97F4A7C15 & _M64
        h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9 & _M64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _M64
        h ^= h >> 31
    return h & ((1 << 63) - 1)


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
# Sources: every sample of a data set on disk, read one at a time


class Source(Dataset):
    """Samples read one at a time: `read(i)` is sample i as stored, (C, *spatial), uint8 or float32;
    `labels` (N,) int64 are read up front (they are small and decide the split)."""

    labels: torch.Tensor
    channels: int
    spatial_shape: tuple[int, ...]
    where: str  # for messages

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.read(int(i)), int(self.labels[i])


class _OffsetReader:
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


class CifarSource(Source):
    """CIFAR-10 binary batches: records of one label byte and a 3x32x32 image, read at their offset."""

    def __init__(self, files: list[Path]) -> None:
        self.files = [_OffsetReader(f) for f in files]
        self.where = str(files[0].parent)
        counts, labels = [], []
        for f in files:
            size = f.stat().st_size
            if size == 0 or size % CIFAR_RECORD:
                raise DataError(
                    f"{f}: {size} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes each); "
                    "re-download it"
                )
            counts.append(size // CIFAR_RECORD)
            labels.append(_cifar_labels(f))
        self.starts = np.cumsum([0, *counts]).tolist()
        self.labels = torch.from_numpy(np.concatenate(labels)).to(torch.int64)
        self.channels, self.spatial_shape = 3, (32, 32)

    def read(self, i: int) -> torch.Tensor:
        k = bisect.bisect_right(self.starts, i) - 1
        raw = self.files[k].read((i - self.starts[k]) * CIFAR_RECORD + 1, CIFAR_RECORD - 1)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(3, 32, 32)


def _cifar_labels(path: Path, chunk_records: int = 4096) -> np.ndarray:
    """The label byte of every record, read a chunk at a time (memory stays at one chunk)."""
    out = []
    with open(path, "rb") as f:
        while block := f.read(chunk_records * CIFAR_RECORD):
            out.append(np.frombuffer(block, dtype=np.uint8)[::CIFAR_RECORD].copy())
    return np.concatenate(out)


class IdxSource(Source):
    """MNIST / Fashion-MNIST IDX images (N, H, W), each read at its offset (`.gz`: from the
    decompressed bytes, kept in memory)."""

    def __init__(self, images: Path, labels: Path) -> None:
        self.where = str(images)
        if images.suffix == ".gz":
            try:
                self._bytes: bytes | None = gzip.decompress(images.read_bytes())
            except (OSError, EOFError, zlib.error) as e:
                raise DataError(f"{images}: cannot read it ({first_line(e)}); re-download it") from None
            head, total = self._bytes[:16], len(self._bytes)
            self._reader = None
        else:
            self._bytes = None
            with open(images, "rb") as f:
                head = f.read(16)
            total = images.stat().st_size
            self._reader = _OffsetReader(images)
        if len(head) < 16 or head[:2] != b"\0\0" or head[2] not in IDX_DTYPES:
            raise DataError(f"{images}: not an IDX file (bad magic number {head[:4].hex() or 'none'}); re-download it")
        if head[3] != 3:
            raise DataError(f"{images}: IDX file with {head[3]} dims, expected 3; are the file names swapped?")
        n, h, w = struct.unpack(">3I", head[4:16])
        self.dtype = np.dtype(IDX_DTYPES[head[2]])
        self.sample_bytes = h * w * self.dtype.itemsize
        if total - 16 != n * self.sample_bytes:
            raise DataError(
                f"{images}: header says {n}x{h}x{w} values but the file holds {total - 16} data bytes; "
                "it is truncated or damaged, re-download it"
            )
        y = memory._read_idx(labels, 1)
        if len(y) != n:
            raise DataError(f"{images}: has {n} samples but '{labels.name}' has {len(y)} labels; they must match")
        self.labels = memory._make_arrays(np.zeros((len(y), 1), np.uint8), y, labels, "images", "labels").y
        self.channels, self.spatial_shape = 1, (h, w)

    def read(self, i: int) -> torch.Tensor:
        offset, size = 16 + i * self.sample_bytes, self.sample_bytes
        raw = self._bytes[offset : offset + size] if self._bytes is not None else self._reader.read(offset, size)
        a = np.frombuffer(raw, dtype=self.dtype).reshape(1, *self.spatial_shape)
        if self.dtype == np.uint8:
            return torch.from_numpy(a.copy())
        return torch.from_numpy(a.astype(np.float32))


class ImageFolderSource(Source):
    """`root/<class>/<image>`, classes sorted by name (labels 0..K-1); each image decoded when read.
    Without `image_size` all images must share one size; with it, each is resized (shorter side to
    `image_size`, bilinear) and centre-cropped to image_size x image_size."""

    def __init__(self, root: Path, classes: list[tuple[Path, list[Path]]], image_size: int | None = None) -> None:
        Image, unreadable = _pillow()
        self.where, self.image_size = str(root), image_size
        self.files: list[str] = []
        labels, size, first, colour, wide = [], None, None, False, False
        for label, (d, files) in enumerate(classes):
            if not files:
                raise DataError(f"{d}: class folder holds no images ({', '.join(memory.IMAGE_SUFFIXES)}); add some")
            for f in files:
                try:
                    with Image.open(f) as im:  # reads the header only
                        mode, im_size = im.mode, im.size
                        colour = colour or _is_colour(im)
                except (*unreadable, OSError, ValueError) as e:
                    raise DataError(f"{f}: cannot read the image ({first_line(e)}); fix or remove it") from None
                wide = wide or mode in ("I", "F") or mode.startswith("I;16")
                if image_size is None:
                    if size is None:
                        size, first = im_size, f
                    elif im_size != size:
                        raise DataError(
                            f"{f}: image is {im_size[0]}x{im_size[1]} but {first} is {size[0]}x{size[1]}; all images"
                            " must have one size: resize them, or give --image-size N"
                        )
                self.files.append(str(f))
                labels.append(label)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.channels = 3 if colour else 1
        self.float = wide  # 16-bit or float images: read as float32, else uint8
        self.spatial_shape = (image_size, image_size) if image_size else (size[1], size[0])

    def read(self, i: int) -> torch.Tensor:
        Image, unreadable = _pillow()
        path = self.files[i]
        try:
            with Image.open(path) as im:
                im.load()
                if self.image_size is not None:
                    im = _resize_crop(im, self.image_size)
                a = memory._image_array(im)
        except (*unreadable, OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read the image ({first_line(e)}); fix or remove it") from None
        if a.shape[1:] != self.spatial_shape:
            raise DataError(
                f"{path}: image is {a.shape[2]}x{a.shape[1]}, the others {self.spatial_shape[1]}x"
                f"{self.spatial_shape[0]} (changed while training?); give --image-size N"
            )
        if a.shape[0] != self.channels:
            a = np.broadcast_to(a, (self.channels, *a.shape[1:]))
        return torch.from_numpy(np.array(a, dtype=np.float32 if self.float else np.uint8))


def _pillow():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading an image folder needs Pillow: pip install 'orthocli[images]'") from None
    return Image, (UnidentifiedImageError,)


def _is_colour(im) -> bool:
    """From the header: does the image decode to 3 channels (`data._image_array`'s rule)?"""
    if im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16"):
        return False
    if im.mode == "P":
        palette = im.getpalette() or []
        return any(palette[k] != palette[k + 1] or palette[k] != palette[k + 2] for k in range(0, len(palette), 3))
    return True


def _resize_crop(im, size: int):
    from PIL import Image

    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if im.mode == "P":  # palette indices cannot be interpolated
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))


class TensorSource(Source):
    """Samples already in memory (normalised), so that `--augment` works on array files too."""

    def __init__(self, arrays: Arrays, where: str, pad: torch.Tensor | None = None) -> None:
        self.x, self.labels, self.where = arrays.x, arrays.y, where
        self.pad = pad  # what a black pixel became when normalised: an augmented crop pads with it
        self.channels, self.spatial_shape = arrays.x.shape[1], tuple(arrays.x.shape[2:])

    def read(self, i: int) -> torch.Tensor:
        return self.x[i]


def open_folder(root: Path, image_size: int | None = None) -> tuple[Source, Source | None]:
    """A folder's training samples and its stored test set (CIFAR's test_batch.bin, MNIST's t10k)."""
    base = memory._cifar_dir(root)
    if base is not None:
        train = [base / f"data_batch_{i}.bin" for i in range(1, 6) if (base / f"data_batch_{i}.bin").is_file()]
        if not train:
            raise DataError(f"{base}: has test_batch.bin but no data_batch_*.bin training batches; add at least one")
        test = base / "test_batch.bin"
        return CifarSource(train), (CifarSource([test]) if test.is_file() else None)
    if memory._idx_file(root, "train-images-idx3-ubyte") or memory._idx_file(root, "train-labels-idx1-ubyte"):
        return _idx_pair(root, "train", True), _idx_pair(root, "t10k", False)
    classes = memory._image_dirs(root)
    if any(files for _, files in classes):
        return ImageFolderSource(root, classes, image_size), None
    raise DataError(
        f"{root}: folder holds no data orthocli recognises; {memory.FORMATS_HINT} "
        "(for images, give the folder whose subfolders are the classes)"
    )


def _idx_pair(root: Path, prefix: str, required: bool) -> IdxSource | None:
    images = memory._idx_file(root, f"{prefix}-images-idx3-ubyte")
    labels = memory._idx_file(root, f"{prefix}-labels-idx1-ubyte")
    if images is None and labels is None and not required:
        return None
    if images is None or labels is None:
        lack = f"{prefix}-images-idx3-ubyte" if images is None else f"{prefix}-labels-idx1-ubyte"
        raise DataError(f"{root}: MNIST folder without {lack}(.gz); add it or re-download the set")
    return IdxSource(images, labels)


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
    (`training.batches`), more shuffled passes follow until there are `min_steps` batches; every
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
    return _batches_on(_loader(split, kind, batch_lists, device, _pad_value(split)), split, device)


def eval_batches(split: Streamed, device: torch.device, batch_size: int = EVAL_BATCH):
    """The whole split in order, without augmentation."""
    lists = [list(range(k, min(k + batch_size, len(split)))) for k in range(0, len(split), batch_size)]
    return _batches_on(_loader(split, f"eval{batch_size}", lists, device), split, device)


def _pad_value(split: Streamed) -> torch.Tensor | None:
    """What an augmented crop pads with: 0 as stored, i.e. -mean/std once normalised (in-memory data)."""
    return split.source.pad if isinstance(split.source, TensorSource) else None


def head(split: Arrays | Streamed, k: int) -> torch.Tensor:
    """The first `k` samples of a split, normalised (to try the model on)."""
    if isinstance(split, Arrays):
        return split.x[:k]
    k = min(k, len(split))
    x = torch.stack([split.source.read(int(i)) for i in split.indices[:k]])
    return split.normalise(x)


# ---------------------------------------------------------------------------------------------
# Statistics and the whole preparation


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
    count, mean, m2 = 0, torch.zeros(source.channels, dtype=torch.float64), None
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


def prepare(
    path: str | os.PathLike | None = None,
    *,
    test_path: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_samples: int | None = None,
    image_size: int | None = None,
    augment: bool = False,
    workers: int | None = None,
    in_memory: bool = False,
) -> DataSplits:
    """The training data as `orthocli train` reads it. Array files (and any data with
    `in_memory=True`) are `data.prepare`'s in-memory splits; folders (CIFAR-10, MNIST IDX, images
    per class) stream. `image_size` resizes and centre-crops an image folder's images; `augment`
    crops and flips training samples as they are read; `workers` loader processes (None: the
    default, `default_workers()`). The same seed picks the same training and validation samples
    either way."""
    if image_size is not None and image_size < 1:
        raise UsageError(f"--image-size must be at least 1, got {image_size}")
    if workers is not None and workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    if workers is None:
        workers = default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    named = builtin_name(path) is not None  # a built-in set's name, even where a folder has that name
    src = Path(path).expanduser() if path is not None and not named else None
    folder = src is not None and src.is_dir()
    if image_size is not None and not (folder and _is_image_folder(src)):
        raise UsageError("--image-size applies to a folder of images (one subfolder per class); drop it")
    if not folder or (in_memory and image_size is None):
        data = memory.prepare(path, test_path=test_path, val_fraction=val_fraction, seed=seed, max_samples=max_samples)
    else:
        data = _streamed(src, test_path, val_fraction, seed, max_samples, image_size, augment, workers, in_memory)
    if augment and isinstance(data.train, Arrays):  # in memory: crop and flip through the same loader
        _need_images(data.spatial_shape)
        pad = (-torch.tensor(data.mean, dtype=torch.float64) / torch.tensor(data.std, dtype=torch.float64)).float()
        source = TensorSource(data.train, data.source, pad)
        train = Streamed(source, torch.arange(len(source)), None, None, workers, True, seed, keep_workers=True)
        data = replace(data, train=train)
    return data


def _is_image_folder(root: Path) -> bool:
    if memory._cifar_dir(root) is not None or memory._idx_file(root, "train-images-idx3-ubyte"):
        return False
    return memory._idx_file(root, "train-labels-idx1-ubyte") is None


def _need_images(spatial_shape: tuple[int, ...]) -> None:
    if len(spatial_shape) != 2:
        raise UsageError("--augment crops and flips images; these samples are 1-D signals: drop it")


def _streamed(src, test_path, val_fraction, seed, max_samples, image_size, augment, workers, in_memory) -> DataSplits:
    if not 0 <= val_fraction <= memory.MAX_VAL_FRACTION:
        raise UsageError(f"validation fraction must be between 0 and {memory.MAX_VAL_FRACTION}, got {val_fraction}")
    if max_samples is not None and max_samples < 1:
        raise UsageError(f"max samples must be at least 1, got {max_samples}")
    try:
        source, test = open_folder(src, image_size)
    except PermissionError as e:
        raise DataError(f"{e.filename or src}: permission denied; check the permissions") from None
    where = str(src)
    test_arrays = None
    if test_path is not None:
        test, test_arrays = _test_set(Path(test_path).expanduser(), image_size)
        where += f"; test: {Path(test_path).expanduser()}"
    num_classes = int(source.labels.max()) + 1
    if num_classes < 2:
        raise DataError(f"{src}: every label is 0; a classifier needs at least two classes")
    train_idx, val_idx = memory.split_indices(
        source.labels, val_fraction=val_fraction, seed=seed, max_samples=max_samples
    )
    memory.check_classes_trained(len(train_idx), num_classes, src, max_samples)
    _check_test(test if test is not None else test_arrays, source, num_classes, str(test_path or src))
    if augment:
        _need_images(source.spatial_shape)
    if in_memory:  # --image-size with --in-memory: decode once, statistics over all of it
        train_x = _materialise(source, train_idx, workers)
        mean, std = memory.channel_stats(train_x)
        norm = lambda x: memory._normalise(Arrays(x, torch.zeros(0)), mean, std).x  # noqa: E731
        return DataSplits(
            train=Arrays(norm(train_x), source.labels[train_idx]),
            val=Arrays(norm(_materialise(source, val_idx, workers)), source.labels[val_idx]),
            test=(
                Arrays(norm(_materialise(test, torch.arange(len(test)), workers)), test.labels)
                if test is not None
                else (None if test_arrays is None else memory._normalise(test_arrays, mean, std))
            ),
            num_classes=num_classes,
            in_channels=source.channels,
            spatial_shape=tuple(source.spatial_shape),
            mean=mean.tolist(),
            std=std.tolist(),
            source=where,
        )
    mean, std = sample_stats(source, train_idx, seed, workers)
    split = lambda s, idx, aug=False: Streamed(s, idx, mean, std, workers, aug, seed, keep_workers=True)  # noqa: E731
    if test is not None:
        test_split = split(test, torch.arange(len(test)))
    elif test_arrays is not None:
        test_split = memory._normalise(test_arrays, mean, std)
    else:
        test_split = None
    return DataSplits(
        train=split(source, train_idx, augment),
        val=split(source, val_idx),
        test=test_split,
        num_classes=num_classes,
        in_channels=source.channels,
        spatial_shape=tuple(source.spatial_shape),
        mean=mean.tolist(),
        std=std.tolist(),
        source=where,
    )


def _test_set(path: Path, image_size: int | None) -> tuple[Source | None, Arrays | None]:
    """--test-data: a folder streams (its stored test set if it has one, else its samples); a file is read whole."""
    if path.is_dir():
        main, stored = open_folder(path, image_size if _is_image_folder(path) else None)
        return (stored if stored is not None else main), None
    main, stored = memory.load_arrays(path)
    return None, (stored if stored is not None else main)


def _check_test(test: Source | Arrays | None, train: Source, num_classes: int, where: str) -> None:
    if test is None:
        return
    shape = (test.x.shape[1], *test.x.shape[2:]) if isinstance(test, Arrays) else (test.channels, *test.spatial_shape)
    want = (train.channels, *train.spatial_shape)
    if tuple(shape) != tuple(want):
        raise DataError(
            f"{where}: test samples are {'x'.join(map(str, shape))} (C x spatial) but training samples are "
            f"{'x'.join(map(str, want))}; they must match"
        )
    labels = test.y if isinstance(test, Arrays) else test.labels
    top = int(labels.max())
    if top >= num_classes:
        raise DataError(
            f"{where}: test labels out of range: found label {top} but the training data has {num_classes} classes "
            f"(0..{num_classes - 1})"
        )


def _materialise(source: Source, indices: torch.Tensor, workers: int) -> torch.Tensor:
    split = Streamed(source, indices, None, None, workers=workers)
    parts = [x for x, _ in eval_batches(split, torch.device("cpu"))]
    if not parts:
        return torch.zeros((0, source.channels, *source.spatial_shape))
    return torch.cat(parts)
