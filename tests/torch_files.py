"""Helpers that write torch checkpoint files by hand (a data.pkl of one's choosing in a torch zip,
a Git LFS pointer), the torch score math as orthocli computed it before the numpy path (the
oracle the numpy path is held to), and a run of the CLI in a Python where torch cannot be
imported."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

ROOT = Path(__file__).parent.parent


def torch_scores(weight: torch.Tensor, groups: int = 1, transposed: bool = False) -> torch.Tensor:
    """Each filter's score with torch: unit rows, |W W^T| without its diagonal, summed over J;
    dead (all-zero) filters score 1. In float32 (float64 stays float64), as orthocli did before."""
    w = weight.detach().cpu()
    w = w.to(torch.float64 if w.dtype == torch.float64 else torch.float32)
    if transposed:
        cin, out = w.shape[0], w.shape[1]
        rows = w.reshape(groups, cin // groups, out, -1).transpose(1, 2).reshape(groups, out, -1)
    else:
        rows = w.reshape(groups, w.shape[0] // groups, -1)
    norms = rows.norm(dim=-1, keepdim=True)
    dead = norms.squeeze(-1) == 0
    unit = rows / torch.where(norms == 0, torch.ones_like(norms), norms)
    cos = (unit @ unit.transpose(1, 2)).abs()
    cos = cos * (1 - torch.eye(cos.shape[-1], dtype=cos.dtype))
    cos = torch.where(dead.unsqueeze(-1) | dead.unsqueeze(-2), torch.zeros_like(cos), cos)
    scores = cos.sum(-1) / cos.shape[-1]
    scores[dead] = 1.0
    return scores.reshape(-1)


class StorageRef:
    """Stands for one storage in `write_zip`'s pickle: pickled as torch.save names a storage."""

    def __init__(self, key: str, storage_class: type, numel: int) -> None:
        self.key, self.storage_class, self.numel = key, storage_class, numel


class Tensor:
    """A tensor of `write_zip`'s pickle, rebuilt from `storage` with any size and stride."""

    def __init__(self, storage: StorageRef, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


def write_zip(path: Path, obj, records: dict[str, bytes], protocol: int = 2) -> Path:
    """A torch zip archive holding `obj` pickled (StorageRef as persistent ids, as torch.save
    writes them) and the storage `records` (key -> bytes)."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, StorageRef):
                return ("storage", o.storage_class, o.key, "cpu", o.numel)
            return None

    buf = io.BytesIO()
    Pickler(buf, protocol=protocol).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/byteorder", "little")
        for key, data in records.items():
            z.writestr(f"archive/data/{key}", data)
        z.writestr("archive/version", "3\n")
    return path


def rewrite_zip(
    source: Path, target: Path, drop: tuple[str, ...] = (), replace: dict[str, bytes] | None = None
) -> Path:
    """A copy of a zip archive without the records whose names end with `drop`, and with `replace`d ones."""
    replace = replace or {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename.endswith(drop):
                continue
            new = next((v for k, v in replace.items() if info.filename.endswith(k)), None)
            dst.writestr(info.filename, src.read(info) if new is None else new)
    return target


LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 12345\n"
)

# `python -c` this, then orthocli's arguments: the CLI in a Python where `import torch` fails, as
# in an environment that installed orthocli without the torch extra.
WITHOUT_TORCH = "import sys; sys.modules['torch'] = None; from orthocli.cli import main; main()"


def run_without_torch(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("ORTHOCLI_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )
