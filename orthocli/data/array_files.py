"""Array files: `.npz`, `.pt`/`.pth` (a `torch.save`d dict of tensors, read with
`weights_only=True`) and `.safetensors`, told apart by their content, not their name. They hold
`x` (N, C, *spatial) and integer labels `y` (N,); optional `x_test` and `y_test` in the same file
are its test set. A 3-D `x` with several channels, (N, C, L), needs a `spatial_dims` entry of 1 in
the file (2 forces the image reading); the other shapes: `checks.make_arrays`.

`load_file` reads one whole; `TensorSource` serves samples already in memory one at a time, so that
`--augment` crops and flips them through the same loader as streamed data."""

from __future__ import annotations

import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from orthocli.data.checks import FORMATS_HINT, Arrays, as_tensor, make_arrays
from orthocli.data.source import Source
from orthocli.errors import DataError, first_line
from orthocli.formats import sniff

NAMED_KEYS = ("x", "y", "x_test", "y_test", "spatial_dims")  # the entries a data file may hold
TORCH_HINT = "save a dict of tensors: torch.save({'x': x, 'y': y}, path)"


def load_file(path: Path) -> tuple[Arrays, Arrays | None]:
    """An array file's set and the test set stored with it (None if it has none)."""
    reader = {"npz": _read_npz, "torch": _read_torch, "safetensors": _read_safetensors}[_kind(path)]
    return _from_mapping(reader(path), path)


def _kind(path: Path) -> str:
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
    from safetensors.torch import load_file as load_safetensors

    try:
        return load_safetensors(path)
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
        sd = torch.tensor(sd) if isinstance(sd, int) else as_tensor(sd, path, "spatial_dims")
        if sd.numel() != 1 or sd.item() not in (1, 2):
            raise DataError(f"{path}: 'spatial_dims' must be the single number 1 or 2")
        spatial_dims = int(sd.item())
    train = make_arrays(d["x"], d["y"], path, spatial_dims=spatial_dims)
    if ("x_test" in d) != ("y_test" in d):
        have, lack = ("x_test", "y_test") if "x_test" in d else ("y_test", "x_test")
        raise DataError(f"{path}: has '{have}' but no '{lack}'; store both or neither")
    test = None
    if "x_test" in d:
        test = make_arrays(d["x_test"], d["y_test"], path, "x_test", "y_test", spatial_dims)
    return train, test


class TensorSource(Source):
    """Samples already in memory (normalised), so that `--augment` works on array files too."""

    def __init__(self, arrays: Arrays, where: str, pad: torch.Tensor | None = None) -> None:
        self.x, self.labels, self.where = arrays.x, arrays.y, where
        self.pad = pad  # what a black pixel became when normalised: an augmented crop pads with it
        self.channels, self.spatial_shape = arrays.x.shape[1], tuple(arrays.x.shape[2:])

    def read(self, i: int) -> torch.Tensor:
        return self.x[i]
