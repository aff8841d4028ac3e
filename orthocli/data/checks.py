"""The checks every data format shares, worded once. `Arrays` is one labelled set; `make_arrays`
makes it from the raw arrays a format read (any shape rule, dtype and value problem is a one-line
`DataError` naming the file and the fix). The checks of a whole set: at least two classes, a
training sample for every class, a test set that fits the training data."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from orthocli.errors import DataError

FORMATS_HINT = (
    "expected a .npz, .pt/.pth or .safetensors file with 'x' and 'y', a folder of class subfolders of images, "
    "a CIFAR-10 binary folder or an MNIST IDX folder"
)


@dataclass
class Arrays:
    """One labelled set: `x` float32 (N, C, *spatial) with 1 or 2 spatial dims, `y` int64 (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


def as_tensor(value, where: os.PathLike | str, key: str) -> torch.Tensor:
    """`value` (a tensor or a numpy array of real numbers) as a CPU tensor; DataError otherwise."""
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


def make_arrays(
    x, y, where: os.PathLike | str, xkey: str = "x", ykey: str = "y", spatial_dims: int | None = None
) -> Arrays:
    """Check one labelled set and bring it to float32 (N, C, *spatial) and int64 (N,). Shape rule
    for `x`: 4-D is (N, C, H, W); 2-D is (N, L), read as (N, 1, L); 3-D is (N, H, W), read as
    (N, 1, H, W), except (N, 1, L), read as it stands, and any (N, C, L) with `spatial_dims` 1."""
    x, y = as_tensor(x, where, xkey), as_tensor(y, where, ykey)
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
        raise DataError(empty_message(where, xkey, shape))
    x = x.to(torch.float32)
    bad = ~torch.isfinite(x).flatten(1).all(1)
    if bad.any():
        first = int(bad.nonzero()[0])
        raise DataError(
            f"{where}: '{xkey}' holds NaN or Inf in {int(bad.sum())} sample(s) (first: sample {first}); "
            "clean or drop them"
        )
    return Arrays(x.contiguous(), class_labels(y, where, ykey).contiguous())


def empty_message(where: os.PathLike | str, key: str, shape: tuple[int, ...]) -> str:
    """What a set without samples is told."""
    return f"{where}: '{key}' is empty (shape {shape}); the data set needs at least one sample"


def class_labels(y: torch.Tensor, where: os.PathLike | str, key: str = "y") -> torch.Tensor:
    """Labels (N,), not empty, as int64 class indices; DataError for fractional or negative ones."""
    if y.is_floating_point():
        frac = ~torch.isfinite(y) | (y != y.round())
        if frac.any():
            first = int(frac.nonzero()[0])
            raise DataError(
                f"{where}: '{key}' holds non-integer labels (sample {first}: {y[first].item()}); "
                "labels must be class indices 0..K-1"
            )
    y = y.to(torch.int64)
    if y.min() < 0:
        raise DataError(
            f"{where}: '{key}' holds negative labels (smallest {int(y.min())}); labels must be class indices 0..K-1"
        )
    return y


def permission_denied(e: PermissionError, path: os.PathLike | str) -> DataError:
    """The DataError for a file or folder this process may not read."""
    return DataError(f"{e.filename or path}: permission denied; check the permissions")


# ---------------------------------------------------------------------------------------------
# A whole set


def count_classes(labels: torch.Tensor, where: os.PathLike | str) -> int:
    """The number of classes of training labels (the largest + 1); DataError below two."""
    num_classes = int(labels.max()) + 1
    if num_classes < 2:
        raise DataError(f"{where}: every label is 0; a classifier needs at least two classes")
    return num_classes


def check_classes_trained(n_train: int, num_classes: int, where, max_samples: int | None) -> None:
    """DataError unless every class can have a training sample (`n_train` at least `num_classes`)."""
    if n_train < num_classes:  # some class has no training sample: the classifier cannot learn it
        raise DataError(
            f"{where}: {n_train} training samples for {num_classes} classes (labels 0..{num_classes - 1}); "
            "training needs at least one sample per class: give more data"
            + (" or a larger --max-samples" if max_samples is not None else "")
        )


def check_test(
    shape: tuple[int, ...], labels: torch.Tensor, train_shape: tuple[int, ...], num_classes: int, where: str
) -> None:
    """DataError unless test samples of `shape` (C, *spatial) match the training samples' and the
    test `labels` are classes of the training data."""
    if tuple(shape) != tuple(train_shape):
        raise DataError(
            f"{where}: test samples are {'x'.join(map(str, shape))} (C x spatial) but training samples are "
            f"{'x'.join(map(str, train_shape))}; they must match"
        )
    top = int(labels.max())
    if top >= num_classes:
        raise DataError(
            f"{where}: test labels out of range: found label {top} but the training data has {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
