"""Which format a data path holds (told by its content, not its name), and its reader:
`load_arrays` reads any path whole, `open_folder` opens a folder to read it sample by sample.
The formats themselves: `array_files`, `images`, `cifar`, `idx`."""

from __future__ import annotations

import os
from pathlib import Path

from orthocli.data.array_files import load_file
from orthocli.data.checks import FORMATS_HINT, Arrays, permission_denied
from orthocli.data.cifar import cifar_dir, load_cifar, open_cifar
from orthocli.data.idx import is_idx_folder, load_idx, open_idx
from orthocli.data.images import class_folders, load_images, open_images
from orthocli.data.source import Source
from orthocli.errors import DataError


def load_arrays(path: str | os.PathLike) -> tuple[Arrays, Arrays | None]:
    """Read a labelled set whole; return (data, the test set stored with it or None)."""
    p = Path(path).expanduser()
    try:
        if not p.exists():
            raise DataError(f"{p}: no such file or folder; check the path")
        if not p.is_dir():
            return load_file(p)
        kind, found = _folder_format(p)
        if kind == "cifar":
            return load_cifar(found)
        if kind == "idx":
            return load_idx(p)
        return load_images(p, found)
    except PermissionError as e:
        raise permission_denied(e, p) from None


def open_folder(root: Path, image_size: int | None = None) -> tuple[Source, Source | None]:
    """A folder's training samples and its stored test set (CIFAR's test_batch.bin, MNIST's t10k),
    each read when it is needed. `image_size` resizes and crops a folder of images."""
    kind, found = _folder_format(root)
    if kind == "cifar":
        return open_cifar(found)
    if kind == "idx":
        return open_idx(root)
    return open_images(root, found, image_size)


def is_image_folder(root: Path) -> bool:
    """Is the folder `root` neither CIFAR-10 nor MNIST IDX (so it can only be a folder of images)?"""
    return cifar_dir(root) is None and not is_idx_folder(root)


def _folder_format(root: Path) -> tuple[str, object]:
    """("cifar", the folder of its batches), ("idx", None) or ("images", its class folders)."""
    base = cifar_dir(root)
    if base is not None:
        return "cifar", base
    if is_idx_folder(root):
        return "idx", None
    classes = class_folders(root)
    if any(files for _, files in classes):
        return "images", classes
    raise DataError(
        f"{root}: folder holds no data orthocli recognises; {FORMATS_HINT} "
        "(for images, give the folder whose subfolders are the classes)"
    )
