"""Reading the zip archive `torch.save` writes (PyTorch >= 1.6, Lightning's .ckpt included) without
torch: `PREFIX/data.pkl` is the pickled object, `PREFIX/data/KEY` the bytes of each storage,
`PREFIX/byteorder` their byte order. The pickle goes through torch_pickle's restricted
unpickler; each storage becomes a numpy view of the memory-mapped file (torch stores them
uncompressed; a deflated record, from a user's zip tool, is inflated), checked to be as long as
the pickle says before any tensor is made from it. The records are checked first (zip_records.py:
each name once, no zip bomb), and a storage key named with two types or sizes is refused: torch
would read one of them.
"""

from __future__ import annotations

import mmap
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import orthocli.checkpoints.readers.torch_pickle as torch_pickle
import orthocli.checkpoints.readers.zip_records as zip_records
from orthocli.errors import InputFileError, TrustError

MAX_PICKLE = torch_pickle.MAX_PICKLE  # bytes: data.pkl holds the structure, never the weights


def read(path: Path) -> Any:
    """The object the archive holds, its tensors numpy arrays (read-only views of the file)."""
    try:
        with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
            records = zip_records.check(path, archive)
            buffer = _map(path, f)
            return _read(path, archive, buffer, records.prefix)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError, RuntimeError, zlib.error) as e:
        # zipfile's words for a damaged archive: a bad header, a name that is not UTF-8, a bad CRC...
        raise InputFileError(
            f"{path}: damaged or truncated zip archive ({str(e)[:100]}); re-save or re-download it"
        ) from None


def _map(path: Path, f: Any) -> mmap.mmap:
    """The whole file, memory-mapped (only the pages read cost memory); a file larger than this
    process may map (a 5 GB sparse file under a memory limit) is one error, not a crash."""
    try:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError, OverflowError, MemoryError) as e:
        raise InputFileError(f"{path}: cannot be mapped into memory ({str(e)[:60]}); is it a checkpoint?") from None


def _read(path: Path, archive: zipfile.ZipFile, buffer: mmap.mmap, prefix: str) -> Any:
    if prefix + "data.pkl" not in archive.NameToInfo:
        raise InputFileError(f"{path}: a zip archive without {prefix}data.pkl; not a torch.save file")
    if prefix + "version" not in archive.NameToInfo and prefix + ".data/version" not in archive.NameToInfo:
        raise InputFileError(
            f"{path}: a zip archive without {prefix}version, which torch requires; not a torch.save file"
        )
    info = archive.getinfo(prefix + "data.pkl")
    if info.file_size > MAX_PICKLE:
        raise InputFileError(
            f"{path}: its data.pkl claims {info.file_size} bytes, more than the {MAX_PICKLE >> 20} MiB a "
            "checkpoint's structure needs; the file is damaged or crafted"
        )
    if info.compress_type == zipfile.ZIP_STORED:  # the bytes torch reads: it does not check the CRC, zipfile would
        start = _data_start(buffer, info)
        if start + info.file_size > len(buffer):
            raise InputFileError(f"{path}: its data.pkl runs past the end of the file; the file is truncated")
        data = bytes(buffer[start : start + info.file_size])
    else:
        data = archive.read(info)
    # the small records torch reads, read as it reads them: a value it refuses is refused
    byteorder = _small_record(path, archive, buffer, prefix + "byteorder") or b"little"
    if byteorder not in (b"little", b"big"):
        raise InputFileError(f"{path}: its byteorder record says {byteorder[:20]!r}; the file is damaged")
    byteorder = byteorder.decode()
    for name in ("version", ".data/version", ".storage_alignment"):
        value = _small_record(path, archive, buffer, prefix + name)
        if value is not None and not value.strip().isdigit():
            raise InputFileError(f"{path}: its {name} record says {value[:20]!r}, not a number; the file is damaged")
    _small_record(path, archive, buffer, prefix + ".format_version")
    named: dict[str, torch_pickle.StorageRef] = {}

    def storage(pid: tuple) -> torch_pickle.StorageRef:
        _, _, key, _, numel = _fields(pid)
        if prefix + "data/" + key not in archive.NameToInfo:
            raise InputFileError(f"data.pkl names the storage 'data/{key[:40]}', which the archive lacks")
        ref = named.setdefault(key, torch_pickle.StorageRef(key, torch_pickle.storage_dtype(pid), numel))
        if ref.numel != numel or ref.dtype != torch_pickle.storage_dtype(pid):
            raise InputFileError(
                f"data.pkl names the storage 'data/{key[:40]}' with two types or sizes; torch would read one of "
                "them: refused as ambiguous"
            )
        return ref

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


def _small_record(path: Path, archive: zipfile.ZipFile, buffer: mmap.mmap, name: str) -> bytes | None:
    """A record of a few bytes (byteorder, version), or None where the archive has none. A stored
    one is read from its local header on, as torch reads it (no CRC, no name comparison)."""
    if name not in archive.NameToInfo:
        return None
    info = archive.getinfo(name)
    if info.file_size > 64:
        raise InputFileError(f"{path}: its {name.split('/', 1)[1]} record holds {info.file_size} bytes; damaged")
    if info.compress_type != zipfile.ZIP_STORED:
        with archive.open(info) as f:
            return f.read(64)
    start = _data_start(buffer, info)
    if start + info.file_size > len(buffer):
        raise InputFileError(f"{path}: its {name.split('/', 1)[1]} record runs past the end of the file; truncated")
    return bytes(buffer[start : start + info.file_size])


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
