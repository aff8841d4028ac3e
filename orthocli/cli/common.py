"""What every command shares: option aliases, output (human / JSON), and error handling.

Imports typer, rich and the standard library only: `orthocli --help` must stay fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from orthocli.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    NeedsTorch,
    OrthoError,
)

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
        help="Allow loading pickled Python objects (whole nn.Modules). This runs code from the file: only for files"
        " you trust.",
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
OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Where to write the result.", show_default=False)]
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

# Set by the app callback from --debug or ORTHOCLI_DEBUG; read when an error is caught.
DEBUG = {"on": False}


def debug_from_env() -> bool:
    return os.environ.get("ORTHOCLI_DEBUG", "") not in ("", "0")


class _Console(Console):
    """Rich's console, except that a reader gone away (`| head`) is a BrokenPipeError for `command`
    to turn into exit 141, where Rich itself would exit with 1, the gate's "too redundant"."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def stderr() -> Console:
    # Rich already drops colour when the stream is not a terminal or NO_COLOR is set.
    return _Console(stderr=True, highlight=False, soft_wrap=True)


def stdout() -> Console:
    return _Console(highlight=False)


def print_json(doc: Any) -> None:
    """Exactly one JSON document on stdout; NaN/Inf are a bug, never output."""
    sys.stdout.write(json.dumps(doc, allow_nan=False, indent=2) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    stderr().print(message, markup=False)


def error(message: str) -> None:
    """The one `Error: ...` line of a failure (with --debug, after the traceback being handled)."""
    _traceback()
    stderr().print(f"Error: {message}", markup=False)


def fail(message: str, code: int) -> None:
    stderr().print(f"Error: {message}", markup=False)
    raise typer.Exit(code)


def name_column(table: Any, header: str, **settings: Any) -> None:
    """The column of layer names: add it first, and print the table with `print_table`."""
    table.add_column(header, no_wrap=True, overflow="fold", **settings)


# The narrowest a folded column gets before the names give way (a number then takes 2 lines).
_MIN_FOLDED = 4


def print_table(table: Any) -> None:
    """Print a table whose first column holds layer names. When it does not fit the terminal (80
    columns), the other columns fold first, widest first, down to a few characters each, then the
    cell padding goes; a layer name breaks across lines only when it is longer than what is left
    (48 characters for `score`'s 7 columns at 80). Rich alone shrinks every column evenly, names
    included, so the widths are set here."""
    from rich.cells import cell_len

    out = stdout()
    columns = table.columns
    natural = [max([cell_len(str(c.header)), *(cell_len(str(v)) for v in c._cells)]) for c in columns]
    others = range(1, len(columns))
    floor = sum(min(_MIN_FOLDED, natural[i]) for i in others)
    room = out.width - (3 * len(columns) + 1)  # a border before each column and one after, padding 1+1
    if natural[0] > room - floor:
        table.padding, room = (0, 0), out.width - (len(columns) + 1)
    if sum(natural) > room:
        widths = [min(natural[0], max(room - floor, 1)), *natural[1:]]
        while sum(widths) > room:
            widest = max(others, key=lambda i: widths[i])
            if widths[widest] <= _MIN_FOLDED:
                break
            widths[widest] -= 1
        for column, width in zip(columns, widths):
            column.width, column.no_wrap, column.overflow = width, False, "fold"
    out.print(table)


def _traceback() -> None:
    """With --debug, the traceback goes to stderr; the exit code stays the documented one."""
    if DEBUG["on"]:
        import traceback

        traceback.print_exc(file=sys.stderr)


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
    """A command whose library errors become one `Error: ...` line and an exit code. Registered
    on the app, with `cls=Command`, by orthocli/cli/__init__.py."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except OrthoError as e:
            _traceback()
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            _stdout_to_devnull()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] != "torch":
                raise
            _traceback()
            fail(str(NeedsTorch(f"orthocli {fn.__name__}")), EXIT_USAGE)
        except Exception as e:
            _traceback()
            fail(
                f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback and report it)",
                EXIT_INTERNAL,
            )

    return run


def _stdout_to_devnull() -> None:
    """After a broken pipe: what is still buffered for stdout goes nowhere, so that Python's exit
    does not print "Exception ignored ... BrokenPipeError" (the note on SIGPIPE in Python's docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (the test runner's capture)
        pass


def _stdout_is_devnull() -> bool:
    try:
        out, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, AttributeError):
        return False
    return (out.st_dev, out.st_ino) == (null.st_dev, null.st_ino)


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
        quiet_before = _stdout_is_devnull()
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except SystemExit as e:
            # Rich, printing the help to a closed pipe, points stdout at /dev/null and exits with 1
            if e.code == 1 and not quiet_before and _stdout_is_devnull():
                sys.exit(EXIT_BROKEN_PIPE)
            raise
        except help_error:  # `orthocli` alone: Typer prints the help, as before
            return super().main(args, prog_name, complete_var, standalone_mode=True, **extra)
        except click.ClickException as e:
            stderr().print(f"Error: {_one_line(e)}", markup=False)
            sys.exit(EXIT_USAGE)
        except typer.Abort:
            stderr().print("Error: interrupted", markup=False)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


def _one_line(e: Any) -> str:
    message = " ".join(line.strip() for line in e.format_message().splitlines() if line.strip())
    ctx = getattr(e, "ctx", None)
    return f"{message} (see '{ctx.command_path if ctx is not None else 'orthocli'} --help')"
