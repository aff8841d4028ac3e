"""`orthocli prune`."""

from __future__ import annotations

from orthocli.cli import app
from orthocli.cli.common import command, fail


@command(app)
def prune() -> None:
    """Drop the most redundant filters into a sub-network (masks). [not built yet]"""
    fail("'prune' is not built yet", 70)
