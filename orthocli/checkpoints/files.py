"""Which checkpoint files a command-line list of paths, globs and folders names.

A folder stands for the checkpoint files directly inside it: those with a checkpoint suffix, and
any other file whose first bytes are a checkpoint's (so `run_07` without a suffix is found while
`README.md`, `metrics.json` and `data.npz` are skipped). How a file is then read is decided by its content
alone, as for a single path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orthocli.errors import InputFileError
from orthocli.formats import sniff

# The names torch, safetensors and TorchScript files are usually given. A folder's file with one
# of these is always taken (a damaged `model.pt` is then reported, not silently skipped).
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".jit")

_CHECKPOINT_KINDS = {"torch-zip", "torch-legacy", "safetensors", "torchscript"}  # formats.sniff's names
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class Target:
    """One file to read, or the reason an argument named none (reported like an unreadable file)."""

    path: Path
    error: InputFileError | None = None


def looks_like_checkpoint(path: Path) -> bool:
    """Whether the first bytes are those of a checkpoint orthocli reads (a torch.save zip or legacy
    pickle, safetensors, TorchScript); a data file (npz, npy, other zips) is not one."""
    try:
        return sniff(path) in _CHECKPOINT_KINDS
    except OSError:
        return False


def _in_folder(folder: Path) -> list[Path]:
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        p = Path(entry.path)
        if p.suffix.lower() in CHECKPOINT_SUFFIXES or looks_like_checkpoint(p):
            found.append(p)
    return found


def expand(args: list[Path]) -> list[Target]:
    """Every file the arguments name, in argument order (a folder's and a glob's sorted by name),
    each once. A path that does not exist stays in the list: reading it reports the error."""
    targets: list[Target] = []
    for arg in args:
        text = str(arg)
        if arg.is_dir():
            files = _in_folder(arg)
            if not files:
                suffixes = ", ".join(CHECKPOINT_SUFFIXES)
                targets.append(Target(arg, InputFileError(f"{arg}: no checkpoint files in this folder ({suffixes})")))
            targets += [Target(p) for p in files]
        elif not arg.exists() and _GLOB_CHARS & set(text):
            # Quoted in a CI script, the shell did not expand it: do it here, ** included.
            import glob

            files = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
            if not files:
                targets.append(Target(arg, InputFileError(f"{arg}: no file matches this pattern")))
            targets += [Target(p) for p in files]
        else:
            targets.append(Target(arg))
    seen: set = set()
    unique = []
    for t in targets:
        key = (os.path.realpath(t.path), t.error is None)
        if key not in seen:
            seen.add(key)
            unique.append(t)
    return unique
