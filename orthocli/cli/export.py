"""`orthocli export`."""

from __future__ import annotations

from orthocli.cli import app
from orthocli.cli.common import command, fail


@command(app)
def export() -> None:
    """Export a checkpoint for deployment (safetensors, pt, TorchScript, ONNX). [not built yet]"""
    fail("'export' is not built yet", 70)
