"""`orthocli train`."""

from __future__ import annotations

from orthocli.cli import app
from orthocli.cli.common import command, fail


@command(app)
def train() -> None:
    """Train with the RePr schedule: train, drop, train sub-network, re-introduce, repeat. [not built yet]"""
    fail("'train' is not built yet", 70)
