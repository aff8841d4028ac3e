"""The data sets shipped in the package (`mnist1d.npz`, `digits.npz`, next to this module), by the
name `--data` takes."""

from __future__ import annotations

import os
from pathlib import Path

from orthocli.errors import UsageError

# sample_models/data/README.md says where each comes from. MNIST-1D is the default: the default
# ConvNet's control stays below 96% on it, so the method has something to gain; on digits the
# control is saturated (98%).
BUILTIN_SETS = {
    "mnist1d": "MNIST-1D (Greydanus 2020): 4000 training and 1000 test signals, 1x40, 10 classes",
    "digits": "UCI handwritten digits: 1438 training and 359 test images, 1x8x8, pixel counts 0..16",
}
DEFAULT_DATA = "mnist1d"


def builtin_path(name: str = DEFAULT_DATA) -> Path:
    """The file of the built-in set `name` (a key of BUILTIN_SETS)."""
    if name not in BUILTIN_SETS:
        raise UsageError(f"no built-in data set '{name}'; choose one of {', '.join(BUILTIN_SETS)}")
    return Path(__file__).resolve().parent / f"{name}.npz"


def default_data_path() -> Path:
    """The file of the default built-in set (DEFAULT_DATA)."""
    return builtin_path(DEFAULT_DATA)


def builtin_name(text: str | os.PathLike | None) -> str | None:
    """The built-in set a `--data` value names, or None for a path. A bare name (no folder part)
    is the built-in set even where a file or folder of that name exists; `./NAME` is the path."""
    if isinstance(text, str) and text in BUILTIN_SETS:
        return text
    return None
