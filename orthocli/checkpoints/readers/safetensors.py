"""Reading a safetensors file into numpy arrays, without torch and without copying: the arrays are
views of the memory-mapped file.

The header is checked as the safetensors library checks it before any tensor is touched: its
length fits the file (and 100 MB, the format's limit), it is a JSON object, every tensor's dtype
is known, its shape and byte range agree, and the byte ranges tile the data section exactly. So a
damaged or lying header is one error, never a read past the end of the file.
"""

from __future__ import annotations

import json
import math
import mmap
from pathlib import Path

import numpy as np

from orthocli.arrays import BFLOAT16
from orthocli.errors import InputFileError, ReadWithTorch

MAX_HEADER = 100_000_000  # bytes: the safetensors format's own limit

# safetensors dtype -> numpy dtype; every value little-endian, as the format stores it
DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": BFLOAT16,
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "C64": np.dtype("<c8"),
}


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors in the order of their bytes in the file, as safetensors.torch.load_file returns
    them; the header's `__metadata__`)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size < 8:
            raise _damaged(path, f"{size} bytes, shorter than the header length")
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    n = int.from_bytes(buffer[:8], "little")
    if n > MAX_HEADER or 8 + n > size:
        raise _damaged(path, f"its header claims {n} bytes, the file has {size - 8}")
    try:
        header = json.loads(bytes(buffer[8 : 8 + n]))
    except (ValueError, UnicodeDecodeError) as e:
        raise _damaged(path, f"its header is not JSON: {str(e)[:80]}") from None
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _damaged(path, "its __metadata__ is not a map of strings")
    entries = sorted((_entry(path, name, info) for name, info in header.items()), key=lambda e: e[2])
    start, data = 8 + n, size - 8 - n
    end = 0
    for name, _, begin, stop in entries:
        if begin != end:
            raise _damaged(path, f"tensor '{name}' starts at byte {begin} of the data, not at {end}")
        end = stop
    if end != data:
        raise _damaged(path, f"its tensors cover {end} bytes of data, the file holds {data}")
    tensors = {}
    for name, (dtype, shape), begin, stop in entries:
        count = (stop - begin) // dtype.itemsize
        tensors[name] = np.frombuffer(buffer, dtype, count, start + begin).reshape(shape)
    return tensors, metadata


def _entry(path: Path, name: str, info: object) -> tuple[str, tuple[np.dtype, tuple[int, ...]], int, int]:
    if not isinstance(info, dict):
        raise _damaged(path, f"tensor '{name}' has no dtype, shape and data_offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise _damaged(path, f"tensor '{name}' has the shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
        raise _damaged(path, f"tensor '{name}' has the data_offsets {offsets!r}")
    if dtype not in DTYPES:
        raise ReadWithTorch(f"tensor '{name}' is of dtype {dtype}")
    begin, stop = offsets
    if stop - begin != math.prod(shape) * DTYPES[dtype].itemsize:
        raise _damaged(path, f"tensor '{name}' of shape {shape} ({dtype}) has {stop - begin} bytes")
    return name, (DTYPES[dtype], tuple(shape)), begin, stop


def _damaged(path: Path, why: str) -> InputFileError:
    return InputFileError(f"{path}: damaged or truncated safetensors file ({why}); re-save or re-download it")
