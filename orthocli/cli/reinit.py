"""`orthocli reinit`."""

from __future__ import annotations

from orthocli.cli import app
from orthocli.cli.common import command, fail


@command(app)
def reinit() -> None:
    """Re-introduce dropped filters from the null space of the kept ones (QR). [not built yet]"""
    fail("'reinit' is not built yet", 70)
