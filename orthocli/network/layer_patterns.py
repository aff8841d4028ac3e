"""Which conv layers `--layers` and `--exclude` name: one rule for every command (score, prune,
train, the Python API).

A pattern is a shell-style glob (`*`, `?`, `[...]`, matched case-sensitively) that matches a layer
when it matches the layer's full name or a dotted suffix of it: `conv1` matches `conv1` and
`features.conv1` but not `xconv1`; `features.*` matches `features.0` and `features.0.conv`. A
pattern that matches no layer of the model is an error, not a silent no-op: the gate would
otherwise fail on the very layer the user meant to leave out.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from orthocli.errors import OptionError

RULE = "a pattern matches a layer's full name or the part after any '.'"


def matches(name: str, pattern: str) -> bool:
    """Whether `pattern` names the layer `name`: its full name, or what follows any of its dots."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return any(fnmatch.fnmatchcase(name[i + 1 :], pattern) for i, c in enumerate(name) if c == ".")


def chosen(name: str, include: Sequence[str] | None, exclude: Sequence[str] | None) -> bool:
    """Whether a layer is kept: named by an include pattern (or there are none), by no exclude one."""
    if include and not any(matches(name, p) for p in include):
        return False
    return not (exclude and any(matches(name, p) for p in exclude))


def check(names: Iterable[str], include: Sequence[str] | None, exclude: Sequence[str] | None, where: str = "") -> None:
    """Raise an OptionError (a usage error, exit 2) naming the first pattern that matches none of
    `names`, and the layers there are; `where` (a path) says whose layers they are and starts the
    message. The option is named as the caller knows it (`layers`, or `--layers` from the CLI)."""
    names = list(names)
    prefix = f"{where}: " if where else ""
    for option, patterns in (("layers", include), ("exclude", exclude)):
        for pattern in patterns or ():
            if not any(matches(n, pattern) for n in names):
                raise OptionError(f"{prefix}{{{option}}} '{pattern}' matches no conv layer; {listing(names)}")


def listing(names: list[str]) -> str:
    """The layers there are, for an error message, with the matching rule."""
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    return f"the layers are: {shown} ({RULE})"
