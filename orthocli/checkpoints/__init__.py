"""Checkpoint files, read and written: every format read into a `Checkpoint`, the payload
and `save` (checkpoint.py, the only module that writes one); the files a command line names
(files.py); the model a checkpoint holds (model.py); the safetensors layout (safetensors_layout.py);
reading without torch for `score` (numpy_checkpoint.py, with the per-format readers in `readers/`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orthocli.faces import lazy_names

_WHERE = {
    "Checkpoint": "orthocli.checkpoints.checkpoint",
    "load": "orthocli.checkpoints.checkpoint",
    "make_payload": "orthocli.checkpoints.checkpoint",
    "save": "orthocli.checkpoints.checkpoint",
    "checkpoint_format": "orthocli.checkpoints.checkpoint",
    "check_readable": "orthocli.checkpoints.checkpoint",
    "expand": "orthocli.checkpoints.files",
    "CheckpointModel": "orthocli.checkpoints.model",
    "load_weights": "orthocli.checkpoints.model",
    "rebuild": "orthocli.checkpoints.model",
    "conv_layers": "orthocli.checkpoints.numpy_checkpoint",
    "decode": "orthocli.checkpoints.safetensors_layout",
    "encode": "orthocli.checkpoints.safetensors_layout",
}
__all__ = [
    "Checkpoint",
    "CheckpointModel",
    "check_readable",
    "checkpoint_format",
    "conv_layers",
    "decode",
    "encode",
    "expand",
    "load",
    "load_weights",
    "make_payload",
    "rebuild",
    "save",
]

if TYPE_CHECKING:
    from orthocli.checkpoints.checkpoint import Checkpoint, check_readable, checkpoint_format, load, make_payload, save
    from orthocli.checkpoints.files import expand
    from orthocli.checkpoints.model import CheckpointModel, load_weights, rebuild
    from orthocli.checkpoints.numpy_checkpoint import conv_layers
    from orthocli.checkpoints.safetensors_layout import decode, encode

__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
