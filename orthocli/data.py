"""Training data: read a labelled set from disk, split off validation data, normalise.

`load_arrays(path)` reads one of these (detected from the content, not trusted from the name):

- a file `.npz`, `.pt`/`.pth` (a `torch.save`d dict of tensors, read with `weights_only=True`) or
  `.safetensors`, holding `x` (N, C, *spatial) and integer labels `y` (N,); optional `x_test` and
  `y_test` in the same file are its test set. Shape rule for `x`: 4-D is (N, C, H, W); 2-D is (N, L),
  1-D signals, read as (N, 1, L); 3-D is (N, H, W), grayscale images, read as (N, 1, H, W), except
  (N, 1, L), read as 1-channel signals as it stands. A 3-D `x` with several channels, (N, C, L), needs
  a `spatial_dims` entry of 1 in the file (2 forces the image reading).
- a folder of images, one subfolder per class (`root/<class>/*.png|jpg|jpeg|bmp|gif`, classes sorted
  by name, labels 0..K-1 in that order); needs Pillow. All images share one size; grayscale images
  give 1 channel, colour ones 3 (if any image is colour, grayscale ones are repeated to 3 channels).
- the CIFAR-10 binary folder (`data_batch_1.bin`.. `data_batch_5.bin`, `test_batch.bin`; or the same
  folder `cifar-10-batches-bin` one level down); `test_batch.bin` is the test set.
- an MNIST / Fashion-MNIST IDX folder (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
  `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally `.gz`); t10k is the test set.

Pixel values are kept as stored (0..255 for images, CIFAR and MNIST); `prepare` normalises them.
Every problem with the data raises `DataError` with one line naming the file and the fix.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orthocli.errors import DataError, UsageError, first_line
from orthocli.formats import sniff

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then a 3x32x32 image in CHW order
NAMED_KEYS = ("x", "y", "x_test", "y_test", "spatial_dims")  # the entries a data file may hold
MAX_VAL_FRACTION = 0.9
STD_FLOOR = 1e-8  # a constant channel is divided by this instead of 0
FORMATS_HINT = (
    "expected a .npz, .pt/.pth or .safetensors file with 'x' and 'y', a folder of class subfolders of images, "
    "a CIFAR-10 binary folder or an MNIST IDX folder"
)
TORCH_HINT = "save a dict of tensors: torch.save({'x': x, 'y': y}, path)"


@dataclass
class Arrays:
    """One labelled set: `x` float32 (N, C, *spatial) with 1 or 2 spatial dims, `y` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class DataSplits:
    train: Arrays
    val: Arrays  # may be empty (val_fraction 0)
    test: Arrays | None
    num_classes: int  # max training label + 1
    in_channels: int
    spatial_shape: tuple[int, ...]  # (L,) or (H, W)
    mean: list[float]  # per channel, from the train part, already subtracted from every split
    std: list[float]  # per channel, from the train part (floored at STD_FLOOR), already divided out
    source: str  # for the record: "digits (built-in)" or the path(s)


# The data sets shipped in the package, by the name `--data` takes (sample_models/data/README.md
# says where each comes from). MNIST-1D is the default: the default ConvNet's control stays below
# 96% on it, so the method has something to gain; on digits the control is saturated (98%).
BUILTIN_SETS = {
    "mnist1d": "MNIST-1D (Greydanus 2020): 4000 training and 1000 test signals, 1x40, 10 classes",
    "digits": "UCI handwritten digits: 1438 training and 359 test images, 1x8x8, pixel counts 0..16",
}
DEFAULT_DATA = "mnist1d"


def builtin_path(name: str = DEFAULT_DATA) -> Path:
    """The file of the built-in set `name` (a key of BUILTIN_SETS)."""
    if name not in BUILTIN_SETS:
        raise UsageError(f"no built-in data set '{name}'; choose one of {', '.join(BUILTIN_SETS)}")
    return Path(__file__).resolve().parent / "data" / f"{name}.npz"


def default_data_path() -> Path:
    """The file of the default built-in set (DEFAULT_DATA)."""
    return builtin_path(DEFAULT_DATA)


def builtin_name(text: str | os.PathLike | None) -> str | None:
    """The built-in set a `--data` value names, or None for a path. A bare name (no folder part)
    is the built-in set even where a file or folder of that name exists; `./NAME` is the path."""
    if isinstance(text, str) and text in BUILTIN_SETS:
        return text
    return None


# ---------------------------------------------------------------------------------------------
# Validation shared by every format


def _as_tensor(value, where: Path, key: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise DataError(f"{where}: '{key}' has dtype {value.dtype}; it must hold numbers")
        if not value.dtype.isnative:
            value = value.astype(value.dtype.newbyteorder("="))
        if value.dtype.kind == "u" and value.dtype.itemsize > 1:
            value = value.astype(np.int64)  # torch has limited support for uint16/32/64
        t = torch.from_numpy(np.ascontiguousarray(value))
    else:
        raise DataError(f"{where}: '{key}' is a {type(value).__name__}, not an array; store it as an array/tensor")
    if t.is_complex():
        raise DataError(f"{where}: '{key}' holds complex numbers; it must hold real numbers")
    return t


def _make_arrays(x, y, where: Path, xkey: str = "x", ykey: str = "y", spatial_dims: int | None = None) -> Arrays:
    """Check one labelled set and bring it to float32 (N, C, *spatial) and int64 (N,)."""
    x, y = _as_tensor(x, where, xkey), _as_tensor(y, where, ykey)
    shape = tuple(x.shape)
    if x.dim() < 2:
        raise DataError(f"{where}: '{xkey}' has shape {shape}; expected (N, L), (N, H, W) or (N, C, H, W)")
    if x.dim() > 4:
        raise DataError(
            f"{where}: '{xkey}' has shape {shape}, more than 2 spatial dims; only 1-D (N, C, L) and 2-D (N, C, H, W) "
            "data is supported"
        )
    if spatial_dims is not None and spatial_dims + 2 not in (x.dim(), x.dim() + 1):
        raise DataError(f"{where}: 'spatial_dims' is {spatial_dims} but '{xkey}' has shape {shape}")
    if spatial_dims is None and x.dim() == 3 and x.shape[1] == 1:
        spatial_dims = 1  # (N, 1, L): height-1 "images" are 1-channel signals
    if x.dim() == 2 or (x.dim() == 3 and spatial_dims != 1):
        x = x.unsqueeze(1)  # (N, L) -> (N, 1, L); (N, H, W) -> (N, 1, H, W)
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise DataError(f"{where}: '{ykey}' has shape {tuple(y.shape)}; labels must be one class index per sample (N,)")
    if len(x) != len(y):
        raise DataError(f"{where}: '{xkey}' has {len(x)} samples but '{ykey}' has {len(y)} labels; they must match")
    if x.numel() == 0:
        raise DataError(f"{where}: '{xkey}' is empty (shape {shape}); the data set needs at least one sample")
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x).flatten(1).all(1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise DataError(
            f"{where}: '{xkey}' holds NaN or Inf in {int(bad.sum())} sample(s) (first: sample {first}); "
            "clean or drop them"
        )
    if y.is_floating_point():
        frac = ~torch.isfinite(y) | (y != y.round())
        if frac.any():
            first = int(frac.nonzero()[0])
            raise DataError(
                f"{where}: '{ykey}' holds non-integer labels (sample {first}: {y[first].item()}); "
                "labels must be class indices 0..K-1"
            )
    y = y.to(torch.int64)
    if y.min() < 0:
        raise DataError(
            f"{where}: '{ykey}' holds negative labels (smallest {int(y.min())}); labels must be class indices 0..K-1"
        )
    return Arrays(x.contiguous(), y.contiguous())


# ---------------------------------------------------------------------------------------------
# Single files: .npz, torch.save dict, .safetensors


def _sniff(path: Path) -> str:
    kind = sniff(path)
    if kind == "empty":
        raise DataError(f"{path}: file is empty; {FORMATS_HINT}")
    if kind == "damaged-zip":
        raise DataError(f"{path}: damaged or truncated zip archive; re-save or re-download it")
    if kind in ("torch-zip", "torchscript", "torch-legacy"):  # a TorchScript archive holds data.pkl too
        return "torch"
    if kind in ("npz", "safetensors"):
        return kind
    if kind == "npy":
        raise DataError(f"{path}: a single .npy array; save inputs and labels together: numpy.savez(path, x=x, y=y)")
    if path.suffix.lower() in (".npz", ".pt", ".pth", ".safetensors"):
        raise DataError(f"{path}: damaged or not a real {path.suffix} file; re-save or re-download it")
    raise DataError(f"{path}: unknown data format; {FORMATS_HINT}")


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:  # read only the entries we use; list the rest as None
            return {k: z[k] if k in NAMED_KEYS else None for k in z.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: holds pickled Python objects; store plain numeric arrays") from None
        raise DataError(f"{path}: damaged .npz file ({first_line(e)}); re-save or re-download it") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise DataError(f"{path}: damaged .npz file ({first_line(e)}); re-save or re-download it") from None


def _read_torch(path: Path) -> dict:
    try:  # an open file: given a path ending in .safetensors, torch.load would read safetensors
        with open(path, "rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise DataError(f"{path}: holds objects other than tensors; {TORCH_HINT}") from None
        raise DataError(f"{path}: damaged torch file ({first_line(e)}); re-save or re-download it") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: damaged torch file ({first_line(e)}); re-save or re-download it") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, not a dict; {TORCH_HINT}")
    return obj


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: damaged .safetensors file ({first_line(e)}); re-save or re-download it") from None


def _from_mapping(d: dict, path: Path) -> tuple[Arrays, Arrays | None]:
    missing = [k for k in ("x", "y") if k not in d]
    if missing:
        found = ", ".join(sorted(map(str, d))) or "nothing"
        raise DataError(
            f"{path}: no {' or '.join(repr(k) for k in missing)} entry (found: {found}); "
            "store inputs as 'x' (N, C, ...) and integer labels as 'y' (N,)"
        )
    spatial_dims = None
    if d.get("spatial_dims") is not None:
        sd = d["spatial_dims"]
        sd = torch.tensor(sd) if isinstance(sd, int) else _as_tensor(sd, path, "spatial_dims")
        if sd.numel() != 1 or sd.item() not in (1, 2):
            raise DataError(f"{path}: 'spatial_dims' must be the single number 1 or 2")
        spatial_dims = int(sd.item())
    train = _make_arrays(d["x"], d["y"], path, spatial_dims=spatial_dims)
    if ("x_test" in d) != ("y_test" in d):
        have, lack = ("x_test", "y_test") if "x_test" in d else ("y_test", "x_test")
        raise DataError(f"{path}: has '{have}' but no '{lack}'; store both or neither")
    test = None
    if "x_test" in d:
        test = _make_arrays(d["x_test"], d["y_test"], path, "x_test", "y_test", spatial_dims)
    return train, test


# ---------------------------------------------------------------------------------------------
# Folders: CIFAR-10 binary, MNIST IDX, images per class


def _cifar_dir(root: Path) -> Path | None:
    for base in (root, root / "cifar-10-batches-bin"):
        if any((base / f"data_batch_{i}.bin").is_file() for i in range(1, 6)) or (base / "test_batch.bin").is_file():
            return base
    return None


def _read_cifar_batch(path: Path) -> Arrays:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % CIFAR_RECORD:
        raise DataError(
            f"{path}: {raw.size} bytes is not a whole number of CIFAR-10 records ({CIFAR_RECORD} bytes each); "
            "re-download it"
        )
    rec = raw.reshape(-1, CIFAR_RECORD)
    return _make_arrays(rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0], path)


def _load_cifar(base: Path) -> tuple[Arrays, Arrays | None]:
    batches = [base / f"data_batch_{i}.bin" for i in range(1, 6) if (base / f"data_batch_{i}.bin").is_file()]
    if not batches:
        raise DataError(f"{base}: has test_batch.bin but no data_batch_*.bin training batches; add at least one")
    parts = [_read_cifar_batch(b) for b in batches]
    train = Arrays(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    test_file = base / "test_batch.bin"
    return train, (_read_cifar_batch(test_file) if test_file.is_file() else None)


IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _idx_file(root: Path, stem: str) -> Path | None:
    for name in (stem, stem.replace("-idx", ".idx")):  # some mirrors write train-images.idx3-ubyte
        for cand in (root / name, root / (name + ".gz")):
            if cand.is_file():
                return cand
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file: magic (0, 0, dtype code, ndim), ndim big-endian uint32 sizes, big-endian data."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({first_line(e)}); re-download it") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'none'}); re-download it")
    if raw[3] != ndim:
        raise DataError(f"{path}: IDX file with {raw[3]} dims, expected {ndim}; are the file names swapped?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header; re-download it")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    if len(raw) - header != int(np.prod(dims)) * dtype.itemsize:
        raise DataError(
            f"{path}: header says {'x'.join(map(str, dims))} values but the file holds {len(raw) - header} data bytes; "
            "it is truncated or damaged, re-download it"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _load_idx_pair(root: Path, prefix: str, required: bool) -> Arrays | None:
    images, labels = _idx_file(root, f"{prefix}-images-idx3-ubyte"), _idx_file(root, f"{prefix}-labels-idx1-ubyte")
    if images is None and labels is None and not required:
        return None
    if images is None or labels is None:
        lack = f"{prefix}-images-idx3-ubyte" if images is None else f"{prefix}-labels-idx1-ubyte"
        raise DataError(f"{root}: MNIST folder without {lack}(.gz); add it or re-download the set")
    return _make_arrays(_read_idx(images, 3), _read_idx(labels, 1), images, "images", "labels")


def _image_dirs(root: Path) -> list[tuple[Path, list[Path]]]:
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        )
        out.append((d, files))
    return out


def _image_array(im) -> np.ndarray:
    """(C, H, W) with C 1 for grayscale, 3 for colour; values as stored."""
    if im.mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"))[None]
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return np.asarray(im).astype(np.float32)[None]
    rgb = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
    if im.mode == "P" and (rgb == rgb[:1]).all():
        return rgb[:1]  # a palette image with a gray palette (common for GIF)
    return rgb


def _load_images(root: Path, classes: list[tuple[Path, list[Path]]]) -> Arrays:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError("reading an image folder needs Pillow: pip install 'orthocli[images]'") from None
    xs, ys, size, first = [], [], None, None
    for label, (d, files) in enumerate(classes):
        if not files:
            raise DataError(f"{d}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); add some or remove it")
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()
                    if size is None:
                        size, first = im.size, f
                    elif im.size != size:
                        raise DataError(
                            f"{f}: image is {im.size[0]}x{im.size[1]} but {first} is {size[0]}x{size[1]}; "
                            "all images must have one size, resize them"
                        )
                    xs.append(_image_array(im))
            except (UnidentifiedImageError, OSError, ValueError) as e:
                raise DataError(f"{f}: cannot read the image ({first_line(e)}); fix or remove it") from None
            ys.append(label)
    channels = max(a.shape[0] for a in xs)
    x = np.stack([np.broadcast_to(a, (channels, *a.shape[1:])) for a in xs]).astype(np.float32)
    return _make_arrays(x, np.asarray(ys, dtype=np.int64), root)


def _load_dir(root: Path) -> tuple[Arrays, Arrays | None]:
    base = _cifar_dir(root)
    if base is not None:
        return _load_cifar(base)
    if _idx_file(root, "train-images-idx3-ubyte") or _idx_file(root, "train-labels-idx1-ubyte"):
        return _load_idx_pair(root, "train", True), _load_idx_pair(root, "t10k", False)
    classes = _image_dirs(root)
    if any(files for _, files in classes):
        return _load_images(root, classes), None
    raise DataError(
        f"{root}: folder holds no data orthocli recognises; {FORMATS_HINT} "
        "(for images, give the folder whose subfolders are the classes)"
    )


def load_arrays(path: str | os.PathLike) -> tuple[Arrays, Arrays | None]:
    """Read a labelled set; return (data, the test set stored with it or None). Formats: see the module doc."""
    p = Path(path).expanduser()
    try:
        if not p.exists():
            raise DataError(f"{p}: no such file or folder; check the path")
        return _load_dir(p) if p.is_dir() else _from_mapping(_read_file(p), p)
    except PermissionError as e:
        raise DataError(f"{e.filename or p}: permission denied; check the permissions") from None


def _read_file(p: Path) -> dict:
    kind = _sniff(p)
    return {"npz": _read_npz, "torch": _read_torch, "safetensors": _read_safetensors}[kind](p)


# ---------------------------------------------------------------------------------------------
# Splitting and normalisation (pure: tensors in, tensors out)


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


def check_classes_trained(n_train: int, num_classes: int, where, max_samples: int | None) -> None:
    """DataError unless every class can have a training sample (`n_train` at least `num_classes`)."""
    if n_train < num_classes:  # some class has no training sample: the classifier cannot learn it
        raise DataError(
            f"{where}: {n_train} training samples for {num_classes} classes (labels 0..{num_classes - 1}); "
            "training needs at least one sample per class: give more data"
            + (" or a larger --max-samples" if max_samples is not None else "")
        )


def _subset(a: Arrays, idx: torch.Tensor) -> Arrays:
    return Arrays(a.x[idx], a.y[idx])


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (population, floored at STD_FLOOR) of (N, C, *spatial) data."""
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
    return flat.mean(1), flat.std(1, correction=0).clamp_min(STD_FLOOR)


def _normalise(a: Arrays, mean: torch.Tensor, std: torch.Tensor) -> Arrays:
    view = (1, -1) + (1,) * (a.x.dim() - 2)
    x = ((a.x.to(torch.float64) - mean.view(view)) / std.view(view)).to(torch.float32)
    return Arrays(x, a.y)


def _check_test(test: Arrays, train: Arrays, num_classes: int, where: str) -> None:
    if test.x.shape[1:] != train.x.shape[1:]:
        shape = "x".join(map(str, test.x.shape[1:]))
        raise DataError(
            f"{where}: test samples are {shape} (C x spatial) but training samples are "
            f"{'x'.join(map(str, train.x.shape[1:]))}; they must match"
        )
    top = int(test.y.max())
    if top >= num_classes:
        raise DataError(
            f"{where}: test labels out of range: found label {top} but the training data has {num_classes} classes "
            f"(0..{num_classes - 1})"
        )


def prepare(
    path: str | os.PathLike | None = None,
    *,
    test_path: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_samples: int | None = None,
) -> DataSplits:
    """Load training data, split off a stratified validation part, normalise every split per
    channel with the training part's statistics. `path`: None for the default built-in set
    (DEFAULT_DATA), a str naming a built-in set (BUILTIN_SETS), else a file or folder; a
    `pathlib.Path` is always a path.

    `max_samples` caps the training data (train + val, before the split) by a stratified, seeded
    subsample; the test set is kept whole. `test_path` replaces any test set stored with the data;
    from that file its own stored test set is used if it has one, else its main data.
    """
    if not 0 <= val_fraction <= MAX_VAL_FRACTION:
        raise UsageError(f"validation fraction must be between 0 and {MAX_VAL_FRACTION}, got {val_fraction}")
    if max_samples is not None and max_samples < 1:
        raise UsageError(f"max samples must be at least 1, got {max_samples}")
    name = DEFAULT_DATA if path is None else builtin_name(path)
    src = builtin_path(name) if name is not None else Path(path).expanduser()
    name = name or next((n for n in BUILTIN_SETS if src.resolve() == builtin_path(n)), None)
    data, test = load_arrays(src)
    source = f"{name} (built-in)" if name is not None else str(src)
    if test_path is not None:
        main, stored = load_arrays(test_path)
        test = stored if stored is not None else main
        source += f"; test: {Path(test_path).expanduser()}"

    num_classes = int(data.y.max()) + 1
    if num_classes < 2:
        raise DataError(f"{src}: every label is 0; a classifier needs at least two classes")
    train_idx, val_idx = split_indices(data.y, val_fraction=val_fraction, seed=seed, max_samples=max_samples)
    train, val = _subset(data, train_idx), _subset(data, val_idx)
    check_classes_trained(len(train), num_classes, src, max_samples)
    if test is not None:
        _check_test(test, train, num_classes, str(test_path or src))

    mean, std = channel_stats(train.x)
    return DataSplits(
        train=_normalise(train, mean, std),
        val=_normalise(val, mean, std),
        test=_normalise(test, mean, std) if test is not None else None,
        num_classes=num_classes,
        in_channels=train.x.shape[1],
        spatial_shape=tuple(train.x.shape[2:]),
        mean=mean.tolist(),
        std=std.tolist(),
        source=source,
    )
