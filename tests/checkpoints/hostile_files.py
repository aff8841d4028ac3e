"""Builders of hostile and damaged checkpoint files (tests/test_hostile_files.py), and a run of the
real CLI in a subprocess under memory and CPU-time limits, with or without torch."""

from __future__ import annotations

import io
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

# --- raw pickle opcodes (protocol 2), to write what no Pickler writes ------------------------------


def glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def text(s: str) -> bytes:
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def pkl(*parts: bytes) -> bytes:
    """PROTO 2, the parts, STOP."""
    return b"\x80\x02" + b"".join(parts) + b"."


EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE, NONE = b"}", b"]", b")", b"N"
MARK, TUPLE, TUPLE1, REDUCE, BUILD = b"(", b"t", b"\x85", b"R", b"b"
APPEND, SETITEM = b"a", b"s"


def int1(n: int) -> bytes:
    return b"K" + bytes([n])


# --- zip archives ------------------------------------------------------------------------------


class Storage:
    """A storage in a pickled object: pickled as torch.save names one (a persistent id)."""

    def __init__(self, key: str, storage_class: type, numel: int) -> None:
        self.key, self.storage_class, self.numel = key, storage_class, numel


class Tensor:
    """A tensor of any size and stride on `storage`, pickled as torch.save pickles one."""

    def __init__(self, storage: Storage, size: tuple, stride: tuple, offset: int = 0) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class Call:
    """Any allowed global called with any arguments."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def pickle_with_storages(obj, legacy: bool = False) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                pid = ("storage", o.storage_class, o.key, "cpu", o.numel)
                return (*pid, None) if legacy else pid
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_zip(path: Path, data_pkl: bytes, records: dict[str, bytes], *, deflate: tuple[str, ...] = ()) -> Path:
    """A torch zip archive: `data_pkl`, `records` (name under archive/ -> bytes; a name given as
    "name#2" is written a second time under "name"); the names in `deflate` compressed."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as z:
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": the point of some cases
        for name, data in {"data.pkl": data_pkl, "byteorder": b"little", "version": b"3\n", **records}.items():
            real = name.split("#")[0]
            method = zipfile.ZIP_DEFLATED if real in deflate else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(f"archive/{real}"), data, compress_type=method)
    return path


def conv_zip(path: Path, extra: dict | None = None, records: dict | None = None, **kw) -> Path:
    """A state dict with one conv weight (4 filters of 2x3x3, float32 values 0..71) and `extra` entries."""
    weight = Tensor(Storage("w", torch.FloatStorage, 72), (4, 2, 3, 3), (18, 9, 3, 1))
    values = torch.arange(72, dtype=torch.float32).numpy().tobytes()
    obj = {"conv.weight": weight, **(extra or {})}
    return write_zip(path, pickle_with_storages(obj), {"data/w": values, **(records or {})}, **kw)


def rezip(source: Path, target: Path, method: int) -> Path:
    """The same records, compressed by `method` (a user's zip tool)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", method) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    return target


# --- safetensors -------------------------------------------------------------------------------


def write_safetensors(path: Path, header: str | dict, data: bytes = b"") -> Path:
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


# --- legacy torch.save files -------------------------------------------------------------------

MAGIC = 0x1950A86A20F9469CFC6C


def write_legacy(path: Path, obj, keys, storages: list[bytes], *, little_endian: bool = True, tail: int = 0) -> Path:
    """A legacy (pre-zip) torch.save file: magic, protocol, system info, `obj`, the `keys` list,
    then each storage's element count (8 bytes) and bytes; `tail` sparse zero bytes after."""
    info = {"protocol_version": 1001, "little_endian": little_endian, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    head = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC, 1001, info))
    body = pickle_with_storages(obj, legacy=True) + pickle.dumps(keys, protocol=2)
    for raw in storages:
        body += struct.pack("<q", len(raw) // 4) + raw
    with open(path, "wb") as f:
        f.write(head + body)
        if tail:
            f.truncate(len(head + body) + tail)
    return path


# --- the CLI under limits ----------------------------------------------------------------------

MEMORY = 1536 << 20  # bytes of data segment (heap, anonymous maps): torch's import takes ~400 MB
CPU_SECONDS = 60
ROOT = Path(__file__).parents[2]
_MAIN = "import sys; {}from orthocli.cli import main; main()"


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY, MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


def run_limited(*args, with_torch: bool = True, timeout: float = 90) -> subprocess.CompletedProcess:
    """`orthocli ARGS` in a subprocess limited to MEMORY and CPU_SECONDS; torch unimportable unless
    `with_torch`. A crash shows as a negative return code (the signal)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "PYTHONPATH": path}
    env.pop("ORTHOCLI_DEBUG", None)
    code = _MAIN.format("" if with_torch else "sys.modules['torch'] = None; ")
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=_limits,
    )


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if not line.startswith("orthocli-score: ")]
