"""Weights as numpy arrays, the way the score path holds them, and the same questions asked of a
torch tensor, so the score math has one implementation whichever kind it is given.

numpy has no bfloat16. A bfloat16 tensor read without torch keeps its 2-byte words under the
structured dtype BFLOAT16 (one uint16 field), so nothing mistakes it for integers and nothing is
converted until a layer is scored: `as_float` then shifts each word into the high half of a
float32, which is exactly the bfloat16 value.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

BFLOAT16 = np.dtype([("bfloat16", "<u2")])


def is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")  # never imported here: a tensor exists only where torch already is
    return torch is not None and isinstance(x, torch.Tensor)


def is_floating(x: Any) -> bool:
    """Whether `x` (a numpy array or a torch tensor) holds floating-point weights."""
    if is_torch(x):
        return x.is_floating_point()
    return x.dtype == BFLOAT16 or np.issubdtype(x.dtype, np.floating)


def as_float(x: Any) -> np.ndarray:
    """`x` as a numpy array of float32 (float64 stays float64), the precision weights are scored in;
    a torch tensor is detached and copied to the CPU first."""
    if is_torch(x):
        import torch

        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        return x.detach().to("cpu", dtype).numpy()
    if x.dtype == BFLOAT16:
        words = np.ascontiguousarray(x).view("<u2").astype("<u4")
        return (words << 16).view("<f4")
    if x.dtype == np.float64:
        return x
    return x.astype(np.float32, copy=False)
