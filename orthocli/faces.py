"""A subpackage's face: the names other packages use, imported from their module on first use, so
importing one module of a package (the torch-free readers `score` uses, say) loads none of its
siblings, and no face creates an import circle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def lazy_names(package: str, where: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """`__getattr__` and `__dir__` for `package`, whose name `n` lives in module `where[n]`."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    return __getattr__, __dir__
