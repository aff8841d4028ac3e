"""`orthocli export`: deployable files of every format, each verified by loading it back
(pipeline.py); the formats, one writer and one reader each, in one table (formats.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orthocli.faces import lazy_names

_WHERE = {
    "export": "orthocli.export.pipeline",
    "parse_shape": "orthocli.export.pipeline",
    "probe_batch": "orthocli.export.pipeline",
}
__all__ = ["export", "parse_shape", "probe_batch"]

if TYPE_CHECKING:
    from orthocli.export.pipeline import export, parse_shape, probe_batch

__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
