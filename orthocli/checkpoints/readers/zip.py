"""Reading the zip archive `torch.save` writes (PyTorch >= 1.6, Lightning's .ckpt included) without
torch: `PREFIX/data.pkl` is the pickled object, `PREFIX/data/KEY` the bytes of each storage,
`PREFIX/byteorder` their byte order. The pickle goes through torch_pickle's restricted
unpickler; each storage becomes a numpy view of the memory-mapped file (torch stores them
uncompressed), checked to be as long as the pickle says before any tensor is made from it.
"""

from __future__ import annotations

import mmap
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import orthocli.checkpoints.readers.torch_pickle as torch_pickle
from orthocli.errors import InputFileError, TrustError

MAX_PICKLE = 1 << 30  # bytes: data.pkl holds the structure, never the weights


def read(path: Path) -> Any:
    """The object the archive holds, its tensors numpy arrays (read-only views of the file)."""
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            return _read(path, archive, buffer)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError, RuntimeError, zlib.error) as e:
        # zipfile's words for a damaged archive: a bad header, a name that is not UTF-8, a bad CRC...
        raise InputFileError(
            f"{path}: damaged or truncated zip archive ({str(e)[:100]}); re-save or re-download it"
        ) from None


def _read(path: Path, archive: zipfile.ZipFile, buffer: mmap.mmap) -> Any:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise InputFileError(f"{path}: a zip archive without one top-level data.pkl; not a torch.save file")
    prefix = pickles[0][: -len("data.pkl")]
    info = archive.getinfo(pickles[0])
    if info.file_size > MAX_PICKLE:
        raise InputFileError(f"{path}: its data.pkl claims {info.file_size} bytes; the file is damaged")
    data = archive.read(info)
    byteorder = "little"
    if prefix + "byteorder" in archive.namelist():
        byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise InputFileError(f"{path}: its byteorder record says {byteorder[:20]!r}; the file is damaged")

    def storage(pid: tuple) -> torch_pickle.StorageRef:
        _, _, key, _, numel = _fields(pid)
        if prefix + "data/" + key not in archive.NameToInfo:
            raise InputFileError(f"data.pkl names the storage 'data/{key}', which the archive lacks")
        return torch_pickle.StorageRef(key, torch_pickle.storage_dtype(pid), numel)

    def storage_bytes(ref: torch_pickle.StorageRef) -> np.ndarray:
        record = archive.getinfo(prefix + "data/" + ref.key)
        need = ref.numel * ref.dtype.itemsize
        if record.file_size < need:
            raise InputFileError(
                f"storage 'data/{ref.key}' holds {record.file_size} bytes where data.pkl says {need}; the file is "
                "damaged or truncated"
            )
        if record.compress_type != zipfile.ZIP_STORED:  # not torch's own way, but a valid zip: decompress
            with archive.open(record) as f:
                return np.frombuffer(f.read(need), np.uint8)
        start = _data_start(buffer, record)
        if start + need > len(buffer):
            raise InputFileError(f"storage 'data/{ref.key}' runs past the end of the file; the file is truncated")
        return np.frombuffer(buffer, np.uint8, need, start)

    try:
        obj, _ = torch_pickle.load(data, storage)
        return torch_pickle.materialize(obj, storage_bytes, byteorder)
    except InputFileError as e:
        raise InputFileError(f"{path}: {e}") from None
    except TrustError as e:
        raise TrustError(f"{path}: {e}") from None


def _fields(pid: tuple) -> tuple:
    if len(pid) != 5 or not isinstance(pid[2], str) or type(pid[4]) is not int or pid[4] < 0:
        raise InputFileError(f"data.pkl holds a malformed storage reference {str(pid)[:80]}")
    return pid


def _data_start(buffer: mmap.mmap, record: zipfile.ZipInfo) -> int:
    """Where a stored record's bytes begin: after its local header (30 bytes, name, extra field)."""
    h = record.header_offset
    if h + 30 > len(buffer) or buffer[h : h + 4] != b"PK\x03\x04":
        raise InputFileError(f"the zip entry '{record.filename}' has no local header; the file is damaged")
    name, extra = int.from_bytes(buffer[h + 26 : h + 28], "little"), int.from_bytes(buffer[h + 28 : h + 30], "little")
    return h + 30 + name + extra
