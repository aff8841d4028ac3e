"""Telling file formats apart by their first bytes, for checkpoints and data files alike. Returns
a kind; each reader turns the kinds it cannot use into its own error."""

from __future__ import annotations

from pathlib import Path

# The first line of a Git LFS pointer file (https://git-lfs.com/spec/v1): what a clone without LFS
# (or a CI checkout without `lfs: true`) holds in place of each checkpoint.
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def sniff(path: Path) -> str:
    """One of: empty, damaged-zip, torchscript, torch-zip, npz, pt2, zip, safetensors, torch-legacy,
    npy, lfs-pointer, unknown."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty"
    if head.startswith(LFS_POINTER):
        return "lfs-pointer"  # a checkpoint kept in Git LFS, checked out without `git lfs pull`
    if head.startswith(b"PK\x03\x04"):
        import zipfile  # here, not above: a safetensors file is told apart without it

        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError):
            return "damaged-zip"
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "torch-zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("archive_format") for n in names):
            return "pt2"  # torch.export.save's archive
        return "zip"
    # safetensors: an 8-byte little-endian header length, then the JSON header
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:1] == b"\x80":
        return "torch-legacy"  # a pre-zip torch.save pickle
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    return "unknown"
