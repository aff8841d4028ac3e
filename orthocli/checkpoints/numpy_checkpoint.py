"""Reading a checkpoint and finding its conv layers without importing torch: what `orthocli score`
does, so that the redundancy gate installs without PyTorch and starts in a tenth of a second.

safetensors files, torch.save's zip archives and its legacy pickles are read into numpy arrays
(readers/: safetensors.py, zip.py, legacy.py); the wrapper around the state
dict is found by the same rules as checkpoint.py's (`unwrap`: --key, Lightning's `state_dict`,
nested dicts). What only torch can read -- a TorchScript archive or a pickled module with --trust,
tensors numpy has no type for -- is read by checkpoint.py where torch is installed, and is a
NeedsTorch error (exit 2, one line saying what to install) where it is not. Without --trust a
TorchScript archive is a TrustError (exit 6) with or without torch: loading it runs its code.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import orthocli.checkpoints.checkpoint as torch_checkpoint
from orthocli.checkpoints.checkpoint import Checkpoint, check_readable, checkpoint_format, torchscript_refusal, unwrap
from orthocli.errors import CheckpointError, NeedsTorch, ReadWithTorch, TrustError
from orthocli.network.layers import ConvLayer, convs_from_state_dict

# Built-in architectures (models.BUILTIN) whose every conv is a plain one (groups=1, not
# transposed), so their layout is known without building them; tests/checkpoints/test_numpy_checkpoint.py
# builds each to check it.
PLAIN_ARCHITECTURES = ("convnet", "resnet20")


def _is_array(v: object) -> bool:
    return isinstance(v, np.ndarray)


def load(path: str | os.PathLike, *, key: str | None = None, trust: bool = False) -> Checkpoint:
    """Read any checkpoint `checkpoint.load` reads; its state dict holds numpy arrays where the
    file was read without torch (safetensors, torch zip, legacy), torch tensors where torch read it."""
    p = Path(path)
    check_readable(p)
    fmt = checkpoint_format(p)
    try:
        if fmt == "safetensors":  # each reader imported only for its own format: start-up counts
            import orthocli.checkpoints.readers.safetensors as safetensors_reader
            from orthocli.checkpoints.safetensors_layout import decode

            tensors, metadata = safetensors_reader.read(p)
            state, extras = decode(tensors, metadata, p)
            return Checkpoint(p, fmt, state, extras=extras)
        if fmt == "torch-zip":
            import orthocli.checkpoints.readers.zip as zip_checkpoint

            return unwrap(zip_checkpoint.read(p), p, fmt, key, _is_array)
        if fmt == "torch-legacy":
            import orthocli.checkpoints.readers.legacy as legacy_checkpoint

            return unwrap(legacy_checkpoint.read(p), p, fmt, key, _is_array)
    except ReadWithTorch as e:
        return _with_torch(p, key, trust, f"{p}: reading it ({e})")
    except TrustError:
        if not trust:
            raise
        return _with_torch(p, key, trust, f"{p}: --trust (unpickling the objects it holds)")
    if not trust:
        raise torchscript_refusal(p)
    return _with_torch(p, key, trust, f"{p}: a TorchScript archive")


def _with_torch(path: Path, key: str | None, trust: bool, what: str) -> Checkpoint:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise NeedsTorch(what) from None
    return torch_checkpoint.load(path, key=key, trust=trust)


@dataclass
class Convs:
    """A checkpoint's conv layers, and what the reader could not know about them."""

    layers: list[ConvLayer]
    notes: list[str] = field(default_factory=list)


def conv_layers(ckpt: Checkpoint, *, trust: bool = False) -> Convs:
    """The conv layers of a checkpoint, in network order, with their groups and layout where known:
    from its module (TorchScript, a trusted pickle), from its built-in architecture (plain convs,
    known without building it), else guessed from the weights' shapes. A recorded architecture
    that is the user's own code (`module:callable`) is built only with --trust and torch; without,
    the layout is guessed and a note says so."""
    if ckpt.module is not None:
        from orthocli.checkpoints.model import CheckpointModel  # torch read this file: it is loaded

        return Convs(CheckpointModel(ckpt, trust=trust).convs())
    arch = ckpt.extras.get("arch") or {}
    name = arch.get("name") if isinstance(arch, dict) else None
    if not name:
        return Convs(convs_from_state_dict(ckpt.state_dict))
    if name in PLAIN_ARCHITECTURES:
        return Convs(sorted(convs_from_state_dict(ckpt.state_dict, known=True), key=lambda c: _natural(c.name)))
    if name != "callable":
        raise CheckpointError(f"unknown architecture '{name}' recorded in the checkpoint")
    target = arch.get("target", "?")
    if trust:
        try:
            import torch  # noqa: F401
        except ImportError:
            raise NeedsTorch(f"building the architecture {target} it records") from None
        from orthocli.checkpoints.model import CheckpointModel

        return Convs(CheckpointModel(ckpt, trust=True).convs())
    note = (
        f"{ckpt.path}: its architecture {target} is code of its own, not built without --trust; groups and "
        "transposed convs are guessed from the weights' shapes (layout_known: false)"
    )
    return Convs(convs_from_state_dict(ckpt.state_dict), [note])


def _natural(name: str) -> list:
    """`layer2.10.conv1` after `layer2.9.conv1`: a built-in architecture's network order, whatever
    order the file lists its tensors in (safetensors sorts them by size and name)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]
