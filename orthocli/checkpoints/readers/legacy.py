"""Reading the legacy `torch.save` format (before PyTorch 1.6, or `_use_new_zipfile_serialization=False`)
without torch. The file is a stream: four pickles (a magic number, the protocol version 1001, the
system's byte order and type sizes, then the object itself, whose storages are persistent ids),
a fifth pickle listing the storage keys, then each storage's bytes in that order, each preceded
by its element count as 8 bytes. Every pickle goes through torch_pickle's restricted unpickler.
The file is memory-mapped: bytes after the last storage (torch ignores them) cost nothing. Like
torch, the reader takes counts and values as little-endian whatever byte order the file records.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np

import orthocli.checkpoints.readers.torch_pickle as torch_pickle
from orthocli.errors import InputFileError, TrustError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001


def read(path: Path) -> Any:
    """The object the file holds, its tensors numpy arrays."""
    try:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, OverflowError, MemoryError) as e:
        raise InputFileError(f"{path}: cannot be mapped into memory ({str(e)[:60]}); is it a checkpoint?") from None
    try:
        return _read(data)
    except InputFileError as e:
        raise InputFileError(f"{path}: {e}") from None
    except TrustError as e:
        raise TrustError(f"{path}: {e}") from None


def _read(data: Any) -> Any:
    def no_storage(pid: tuple) -> torch_pickle.StorageRef:
        raise InputFileError("a storage before the object; not a torch.save file")

    magic, at = torch_pickle.load(data, no_storage)
    protocol, at = torch_pickle.load(data, no_storage, at)
    info, at = torch_pickle.load(data, no_storage, at)
    if magic != MAGIC or protocol != PROTOCOL or not isinstance(info, dict):
        raise InputFileError("a pickle, but not one written by torch.save")
    # torch's reader (THPStorage_readFileRaw) takes counts and values as little-endian whatever the
    # file records; so does this one, so that both read the same numbers
    byteorder = "little"
    storages: dict[str, torch_pickle.StorageRef] = {}

    def storage(pid: tuple) -> torch_pickle.StorageRef:
        if len(pid) != 6 or not isinstance(pid[2], str) or type(pid[4]) is not int or pid[4] < 0:
            raise InputFileError(f"a malformed storage reference {str(pid)[:80]}")
        key, numel, view = pid[2], pid[4], pid[5]
        root = storages.setdefault(key, torch_pickle.StorageRef(key, torch_pickle.storage_dtype(pid), numel))
        if root.numel != numel or root.dtype != torch_pickle.storage_dtype(pid):
            raise InputFileError(f"storage '{key}' is named with two sizes or types")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int for v in view[1:])):
            raise InputFileError(f"a malformed storage view {str(view)[:80]}")
        return torch_pickle.StorageRef(key, root.dtype, view[2], (str(view[0]), view[1], view[2]))

    obj, at = torch_pickle.load(data, storage, at)
    keys, at = torch_pickle.load(data, no_storage, at)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or set(keys) != set(storages):
        raise InputFileError("its list of storages does not match the object's")
    raw: dict[str, np.ndarray] = {}
    for key in keys:
        ref = storages[key]
        if at + 8 > len(data):
            raise InputFileError(f"storage '{key}' is cut short; the file is truncated")
        numel = int.from_bytes(data[at : at + 8], "little" if byteorder == "little" else "big")
        size = ref.numel * ref.dtype.itemsize
        if numel != ref.numel or at + 8 + size > len(data):
            raise InputFileError(f"storage '{key}' holds other than the {ref.numel} elements its tensors need")
        raw[key] = np.frombuffer(data, np.uint8, size, at + 8)
        at += 8 + size

    def storage_bytes(ref: torch_pickle.StorageRef) -> np.ndarray:
        if ref.view is None:
            return raw[ref.key]
        _, offset, numel = ref.view
        start, size = offset * ref.dtype.itemsize, numel * ref.dtype.itemsize
        if offset < 0 or start + size > raw[ref.key].nbytes:
            raise InputFileError(f"a view past the end of storage '{ref.key}'")
        return raw[ref.key][start : start + size]

    return torch_pickle.materialize(obj, storage_bytes, byteorder)
