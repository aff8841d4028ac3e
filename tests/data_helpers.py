"""Arrays and data files for the orthocli.data tests, and their checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from orthocli.data import Arrays, load_arrays, prepare
from orthocli.errors import DataError


def make_set(n: int = 40, shape=(2, 3, 4), classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32) * 3 + 1
    y = (np.arange(n) % classes).astype(np.int64)
    return x, y


def save_any(path: Path, **arrays) -> Path:
    """Write arrays in the format the suffix names."""
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix in (".pt", ".pth"):
        torch.save({k: torch.as_tensor(v) for k, v in arrays.items()}, path)
    else:
        save_file({k: torch.as_tensor(v).contiguous() for k, v in arrays.items()}, str(path))
    return path


def same(a: Arrays, x: np.ndarray, y: np.ndarray) -> None:
    assert a.x.dtype == torch.float32 and a.y.dtype == torch.int64
    assert torch.equal(a.x, torch.as_tensor(x, dtype=torch.float32))
    assert torch.equal(a.y, torch.as_tensor(y, dtype=torch.int64))


def raises_data(match: str, path, **kw) -> str:
    with pytest.raises(DataError, match=match) as e:
        prepare(path, **kw) if kw else load_arrays(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg
