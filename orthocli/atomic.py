"""Writing result files safely: refuse a bad output path before any work, then write through a
temporary file in the same folder and rename it, so no reader ever sees a half-written file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from orthocli.errors import OutputError


def check_output(path: str | os.PathLike, *, force: bool, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output path before any work is done: the input itself, an existing file without
    --force, a directory, or a folder that does not exist."""
    p = Path(path)
    for i in inputs:
        ip = Path(i)
        if p.resolve() == ip.resolve() or (ip.exists() and p.exists() and os.path.samefile(ip, p)):
            raise OutputError(f"{p}: is the input file; write the result to another path")
    if p.is_dir():
        raise OutputError(f"{p}: is a directory; give a file name")
    if p.exists() and not force:
        raise OutputError(f"{p}: already exists; use --force to overwrite it")
    if not p.parent.is_dir():
        raise OutputError(f"{p.parent}: no such directory; create it first")
    if not os.access(p.parent, os.W_OK):
        raise OutputError(f"{p.parent}: directory is not writable")
    return p


def make_folders(path: str | os.PathLike) -> Path | None:
    """Create the missing folder an output file goes into (and those above it), as `train`'s
    default `runs/` is: the folder, or None when it existed. OutputError (exit 5) when it cannot be
    created: a file stands in its place, or a folder above it is read-only."""
    parent = Path(path).parent
    if parent.is_dir():
        return None
    existing = parent
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{existing}: is a file, not a folder; give an output path in a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{parent}: cannot create the folder ({e.strerror or e}); check the permissions") from None
    return parent


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Any], None],
    *,
    force: bool,
    inputs=(),
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Write through a temporary file in the same folder, then rename: a reader never sees a
    half-written file, and a failure or interruption leaves the old file (if any) in place.
    `check`, if given, is called with the written temporary file before the rename; when it
    raises, nothing is renamed and the temporary file is removed."""
    p = check_output(path, force=force, inputs=inputs)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    except OSError as e:
        raise OutputError(f"{p}: cannot write ({e.strerror or e}); check the folder's permissions") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a result is an ordinary file
        os.replace(tmp, p)
    except OSError as e:
        _unlink(tmp)
        raise OutputError(f"{p}: cannot write ({e.strerror or e}); check free space and permissions") from None
    except BaseException:
        _unlink(tmp)
        raise
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
