"""The fast path of `orthocli score`: its command line parsed without Typer, Click or Rich, which
take longer to import than the scoring takes (docs/score.md, "Start-up").

Only the plain, valid command lines of `orthocli [--debug] score ...` are parsed here: anything
else -- --help, another command, an option this table does not list, a value out of its range or
not plainly a number, a missing argument -- returns None, and the Typer app parses the line
instead, with its own messages. So this parser can only ever be faster, never different:
tests/cli/test_fast_args.py checks that the table below agrees with score.py's Typer options and that
both parse the same lines into the same ScoreArgs.
"""

from __future__ import annotations

import re
from pathlib import Path

from orthocli.cli.output import DEBUG, debug_from_env
from orthocli.cli.score_run import FORMATS, ScoreArgs

# option -> (ScoreArgs field, kind), as score.py declares them
OPTIONS = {
    "--layers": ("layers", "text list"),
    "-l": ("layers", "text list"),
    "--exclude": ("exclude", "text list"),
    "-x": ("exclude", "text list"),
    "--top": ("top", "count"),
    "-k": ("top", "count"),
    "--fail-above": ("fail_above", "fraction"),
    "--against": ("against", "path"),
    "--tolerance": ("tolerance", "non-negative"),
    "--key": ("key", "text"),
    "--trust": ("trust", "flag"),
    "--json": ("json_out", "flag"),
    "--format": ("output_format", "format"),
    "--plot": ("plot", "path"),
    "--force": ("force", "flag"),
    "-f": ("force", "flag"),
}

_COUNT = re.compile(r"(0|[1-9][0-9]{0,8})")
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")


def score_args(argv: list[str]) -> ScoreArgs | None:
    """`argv` (without the program name) as ScoreArgs, or None where Typer should parse it."""
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] != "score":
        return None
    values: dict = {}
    paths: list[Path] = []
    rest = iter(argv[1:])
    for token in rest:
        if token == "--":
            paths += [Path(t) for t in rest]
            break
        if not token.startswith("-") or token == "-":
            paths.append(Path(token))
            continue
        name, attached = token, None
        if token.startswith("--") and "=" in token:
            name, attached = token.split("=", 1)
        elif not token.startswith("--") and len(token) > 2:
            name, attached = token[:2], token[2:]
        if name not in OPTIONS:
            return None  # --help, -h, an unknown option: Typer's to answer
        field, kind = OPTIONS[name]
        if kind == "flag":
            if attached is not None:
                return None
            values[field] = True
            continue
        text = attached if attached is not None else next(rest, None)
        if text is None or (attached is None and text.startswith("-")):
            return None
        value = _value(kind, text)
        if value is None:
            return None
        if kind == "text list":
            values.setdefault(field, []).append(value)
        else:
            values[field] = value
    if not paths:
        return None
    DEBUG["on"] = debug or debug_from_env()
    return ScoreArgs(checkpoints=paths, **values)


def _value(kind: str, text: str) -> object:
    """The value of one option, or None where it is not plainly valid (Typer then says why)."""
    if kind in ("text", "text list"):
        return text
    if kind == "path":
        return Path(text)
    if kind == "format":
        return text if text in FORMATS else None
    if kind == "count":
        return int(text) if _COUNT.fullmatch(text) else None
    if not _NUMBER.fullmatch(text):
        return None
    number = float(text)
    if kind == "fraction" and not 0 <= number <= 1:
        return None
    return number
