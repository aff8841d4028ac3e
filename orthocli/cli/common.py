"""What the Typer commands share: option aliases, the error handling of a command and of the app,
and (from output.py, which needs no Typer) the output (human / JSON) and the debug switch.

Imports typer and the standard library only: `orthocli --help` must stay fast.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from orthocli.cli.output import (  # noqa: F401 (re-exported for the command modules)
    DEBUG,
    debug_from_env,
    error,
    exit_code_of,
    flag,
    log,
    name_column,
    output_folder,
    print_json,
    print_table,
    stderr,
    stdout,
    stdout_is_devnull,
)
from orthocli.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE

# --- option aliases, written once -------------------------------------------------------------
CkptArg = Annotated[
    Path,
    typer.Argument(
        help="Checkpoint: torch.save file (zip or legacy), .safetensors, or TorchScript archive.",
        show_default=False,
    ),
]
KeyOpt = Annotated[
    Optional[str],
    typer.Option(
        "--key",
        help="Where the state dict sits in a wrapping dict, e.g. 'state_dict' or 'model.ema'.",
        show_default=False,
    ),
]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust",
        help="Allow loading TorchScript archives and pickled Python objects (whole nn.Modules). This runs code from"
        " the file: only for files you trust.",
    ),
]
CkptsArg = Annotated[
    list[Path],
    typer.Argument(
        help="Checkpoints: files, folders (the checkpoint files in them) or glob patterns ('runs/*.pt').",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables.")]
OutOpt = Annotated[
    Path,
    typer.Option("--output", "-o", help="Where to write the result (a missing folder is created).", show_default=False),
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite the output if it exists.")]
LayersOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--layers",
        "-l",
        help="Only layers this glob names (repeatable): it matches a full name or a dotted suffix, e.g."
        " 'features.*' or 'conv2'.",
        show_default=False,
    ),
]
ExcludeOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--exclude",
        "-x",
        help="Skip layers this glob names (repeatable): it matches a full name or a dotted suffix, so 'conv1'"
        " skips features.conv1. A pattern naming no layer is an error.",
        show_default=False,
    ),
]


def fail(message: str, code: int) -> None:
    log(f"Error: {message}")
    raise typer.Exit(code)


def in_panel(alias: Any, panel: str) -> Any:
    """A copy of a shared option alias (`Annotated[type, typer.Option(...)]`) shown in help panel `panel`."""
    import copy
    import typing

    kind, info, *more = typing.get_args(alias)
    info = copy.copy(info)
    info.rich_help_panel = panel
    return Annotated[(kind, info, *more)] if more else Annotated[kind, info]


class Command(TyperCommand):
    """Help without a type column for flags: `--force` takes no value, so `<bool>` would mislead."""

    def get_params(self, ctx: Any) -> list:
        params = super().get_params(ctx)
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


def command(fn: Callable) -> Callable:
    """A command whose library errors become one `Error: ...` line and an exit code
    (`output.exit_code_of`). Registered on the app, with `cls=Command`, by orthocli/cli/commands.py."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BaseException as e:
            code = exit_code_of(e, fn.__name__)
            if code is None:
                raise
            raise typer.Exit(code) from None

    return run


def _click_module() -> Any:
    """The click that Typer runs on: its own copy (Typer >= 0.26) or the click package."""
    import typer.core

    vendored = getattr(typer.core, "_click", None)
    if vendored is not None:
        return vendored
    import click

    return click


class App(TyperGroup):
    """The app's group: any usage error Typer/Click finds (a bad option value, a missing argument,
    an unknown option), for every command, is one `Error: ...` line on stderr and exit 2, where
    Typer would draw a box of five lines. --help, and `orthocli` alone, print help as before."""

    def main(
        self,
        args: Any = None,
        prog_name: Any = None,
        complete_var: Any = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        click = _click_module()
        help_error = getattr(click.exceptions, "NoArgsIsHelpError", ())
        quiet_before = stdout_is_devnull()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit as e:
            # Rich, printing the help to a closed pipe, points stdout at /dev/null and exits with 1
            if e.code == 1 and not quiet_before and stdout_is_devnull():
                sys.exit(EXIT_BROKEN_PIPE)
            raise
        except help_error:  # `orthocli` alone: Typer prints the help, as before
            return super().main(args, prog_name, complete_var, standalone_mode=True, **extra)
        except click.ClickException as e:
            log(f"Error: {_one_line(e)}")
            sys.exit(EXIT_USAGE)
        except typer.Abort:
            log("Error: interrupted")
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(e: Any) -> str:
    message = " ".join(line.strip() for line in e.format_message().splitlines() if line.strip())
    ctx = getattr(e, "ctx", None)
    return f"{message} (see '{ctx.command_path if ctx is not None else 'orthocli'} --help')"
