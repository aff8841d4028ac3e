"""Walking nested containers (dicts, lists, tuples) of tensors and plain values: one walker for
the checkpoint writer (tensors to the CPU), the exporter (JSON metadata) and the training state
(own copies of what was read)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def map_tree(obj: Any, leaf: Callable[[Any], Any]) -> Any:
    """`obj` rebuilt with `leaf` applied to everything that is not a dict, list or tuple; the
    containers keep their type and keys."""
    if isinstance(obj, dict):
        return {k: map_tree(v, leaf) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tree(v, leaf) for v in obj)
    return leaf(obj)
