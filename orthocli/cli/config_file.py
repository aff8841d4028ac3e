"""`--config FILE`: a TOML file's values for the options not given on the command line, keyed by
the long option names (`max_epochs = 50`, or `max-epochs`), each checked by the option's own parser.
Works for any command's parameters (the click context says which options the command has)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from orthocli.errors import UsageError


def config_option(example: str, **kw: Any) -> Any:
    """The `--config FILE` option of a command; `example`: one of its options as a TOML line."""
    return Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help=f"Read options from a TOML file (keys as the long option names, e.g. {example});"
            " command-line flags win.",
            show_default=False,
            **kw,
        ),
    ]


def from_toml(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """The values the file at `path` gives for options not given on the command line, by parameter
    name, checked by the options' own parsers; UsageError for an unreadable file, an unknown key or
    a bad value."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError(
                "--config needs Python 3.11, or the tomli package on Python 3.10: pip install tomli"
            ) from None
    try:
        table = tomllib.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    params = {p.name: p for p in ctx.command.params}
    out = {}
    for raw, value in table.items():
        name = {"json": "json_out"}.get(raw.replace("-", "_"), raw.replace("-", "_"))
        if name not in params or name == "config":
            known = ", ".join(sorted(n for n in params if n != "config"))
            raise UsageError(f"--config {path}: unknown option '{raw}'; the options are: {known}")
        if given(ctx, name):
            continue  # given on the command line (or in the environment): the flag wins
        try:
            out[name] = params[name].process_value(ctx, value)
        except Exception as e:  # the parser's own check of the value (choices, ranges, types)
            raise UsageError(f"--config {path}: bad value for '{raw}': {getattr(e, 'message', e)}") from None
    return out


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option `name`. Compared by the source's name, never by importing click's
    enum: Typer >= 0.24 carries its own copy of click, and an installed click's enum never equals it."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")
