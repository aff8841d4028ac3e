"""Reading a safetensors file into numpy arrays, without torch and without copying: the arrays are
views of the memory-mapped file.

The header is checked as the safetensors library checks it before any tensor is touched: its
length fits the file (and 100 MB, the format's limit), it is a JSON object nested at most
MAX_NESTING deep with each name once, every tensor's dtype is known, its shape (at most 64
dimensions; more are left to torch) and byte range agree, and the byte ranges tile the data
section exactly. So a damaged or lying header is one error, never a read past the end of the
file; the file is memory-mapped only once its header has been checked.
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
MAX_NESTING = 64  # JSON nesting: a header is an object of objects of lists; the library's parser stops at 128
MAX_DIMS = 64  # numpy's limit

# dtypes the safetensors format defines that numpy has no type for: read with torch where it is installed
TORCH_ONLY = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C32", "U1", "I1"}

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
        f.seek(0)
        n = int.from_bytes(f.read(8), "little")
        if n > MAX_HEADER or 8 + n > size:
            raise _damaged(path, f"its header claims {n} bytes, the file has {size - 8}")
        text = f.read(n)
        header = _json(path, text)
        tensors_at = f.fileno()
        return _read(path, header, n, size, tensors_at)


def _json(path: Path, text: bytes) -> object:
    """The header parsed: json's parser refuses deep nesting with RecursionError (near 1000 levels);
    the safetensors library's stops at 128, and so does this reader, at MAX_NESTING."""

    def unique(pairs: list) -> dict:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("a name given twice, which readers resolve differently")
        return out

    try:
        header = json.loads(text, object_pairs_hook=unique)
    except RecursionError:
        raise _damaged(path, f"its header nests more than {MAX_NESTING} deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _damaged(path, f"its header is not JSON: {str(e)[:80]}") from None
    todo = [(header, 1)]
    while todo:  # iterative: nothing downstream recurses into a header deeper than MAX_NESTING
        node, depth = todo.pop()
        if depth > MAX_NESTING:
            raise _damaged(path, f"its header nests more than {MAX_NESTING} deep")
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        todo += [(c, depth + 1) for c in children if isinstance(c, (dict, list))]
    return header


def _read(path: Path, header: object, n: int, size: int, fd: int) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _damaged(path, "its __metadata__ is not a map of strings")
    entries = sorted((_entry(path, name, info) for name, info in header.items()), key=lambda e: (e[2], e[3]))
    start, data = 8 + n, size - 8 - n
    end = 0
    for name, _, begin, stop in entries:
        if begin != end:
            raise _damaged(path, f"tensor '{name}' starts at byte {begin} of the data, not at {end}")
        end = stop
    if end != data:
        raise _damaged(path, f"its tensors cover {end} bytes of data, the file holds {data}")
    buffer = b""
    if data:
        try:
            buffer = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError, OverflowError, MemoryError) as e:
            raise InputFileError(f"{path}: cannot be mapped into memory ({str(e)[:60]}); is it a checkpoint?") from None
    tensors = {}
    for name, (dtype, shape), begin, stop in entries:
        count = (stop - begin) // dtype.itemsize
        tensors[name] = np.frombuffer(buffer, dtype, count, start + begin).reshape(shape)
    return tensors, metadata


def _entry(path: Path, name: str, info: object) -> tuple[str, tuple[np.dtype, tuple[int, ...]], int, int]:
    if not isinstance(info, dict):
        raise _damaged(path, f"tensor '{name}' has no dtype, shape and data_offsets")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    name = name[:80]
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 1 << 62 for d in shape)):
        raise _damaged(path, f"tensor '{name}' has the shape {str(shape)[:80]}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
        raise _damaged(path, f"tensor '{name}' has the data_offsets {str(offsets)[:80]}")
    if not isinstance(dtype, str) or (dtype not in DTYPES and dtype not in TORCH_ONLY):
        raise _damaged(path, f"tensor '{name}' has the dtype {str(dtype)[:40]}, which safetensors does not define")
    if dtype not in DTYPES:
        raise ReadWithTorch(f"tensor '{name}' is of dtype {dtype}")
    if len(shape) > MAX_DIMS:
        raise ReadWithTorch(f"tensor '{name}' has {len(shape)} dimensions")
    begin, stop = offsets
    if stop - begin != math.prod(shape) * DTYPES[dtype].itemsize:
        raise _damaged(path, f"tensor '{name}' of shape {str(shape)[:80]} ({dtype}) has {stop - begin} bytes")
    if math.prod(d for d in shape if d) * DTYPES[dtype].itemsize >= 1 << 62:
        raise _damaged(path, f"tensor '{name}' has the shape {str(shape)[:80]}, which no memory can address")
    return name, (DTYPES[dtype], tuple(shape)), begin, stop


def _damaged(path: Path, why: str) -> InputFileError:
    return InputFileError(f"{path}: damaged or truncated safetensors file ({why}); re-save or re-download it")
