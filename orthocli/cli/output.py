"""What every command prints and how a failure ends, without Typer: `score`'s fast path
(fast_args.py) runs on this alone, and Rich is imported only where a table or a progress bar is
drawn. cli/common.py re-exports it for the Typer commands.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from orthocli.config import option_name
from orthocli.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    NeedsTorch,
    OptionError,
    OrthoError,
)


def message_of(e: Exception) -> str:
    """A library error's message as the command line says it: options named by their flags."""
    return e.render(flag) if isinstance(e, OptionError) else str(e)


def flag(field: str) -> str:
    """The command-line flag of an option field (`min_keep` -> `--min-keep`): how the CLI names the
    options that library errors (`errors.OptionError`) name by field."""
    return "--" + option_name(field).replace("_", "-")


# Set from --debug or ORTHOCLI_DEBUG before a command runs; read when an error is caught.
DEBUG = {"on": False}


def debug_from_env() -> bool:
    return os.environ.get("ORTHOCLI_DEBUG", "") not in ("", "0")


def log(message: str) -> None:
    """One line on stderr (messages and progress: never on stdout, which holds the results)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def output_folder(path: Any, *, is_folder: bool = False) -> None:
    """Every command's rule for an output path (-o, --plot, --metrics): a missing folder it goes
    into is created, as train's default `runs/` is, and said on stderr. `is_folder`: `path` is
    itself the folder the outputs go into (score --plot with several checkpoints)."""
    if path is None:
        return
    from pathlib import Path

    from orthocli.atomic import make_folders

    created = make_folders(Path(path) / "-" if is_folder else path)
    if created is not None:
        log(f"Created the folder {created}{os.sep} for {path}")


def error(message: str) -> None:
    """The one `Error: ...` line of a failure (with --debug, after the traceback being handled)."""
    _traceback()
    log(f"Error: {message}")


def print_json(doc: Any) -> None:
    """Exactly one JSON document on stdout; NaN/Inf are a bug, never output."""
    sys.stdout.write(json.dumps(doc, allow_nan=False, indent=2) + "\n")
    sys.stdout.flush()


def _console_class() -> type:
    from rich.console import Console

    class _Console(Console):
        """Rich's console, except that a reader gone away (`| head`) is a BrokenPipeError, which
        ends the command with 141, where Rich itself would exit with 1, the gate's "too redundant"."""

        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Console


def stderr() -> Any:
    # Rich already drops colour when the stream is not a terminal or NO_COLOR is set.
    return _console_class()(stderr=True, highlight=False, soft_wrap=True)


def stdout() -> Any:
    return _console_class()(highlight=False)


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


def exit_code_of(e: BaseException, command: str) -> int | None:
    """How a command that raised `e` ends: its one `Error: ...` line printed, the exit code
    returned (README's table). None for what is not a failure to report (an exit, an abort)."""
    if isinstance(e, OrthoError):
        error(message_of(e))
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):
        log("Error: interrupted")
        return EXIT_INTERRUPTED
    if isinstance(e, BrokenPipeError):
        stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "torch":
        error(str(NeedsTorch(f"orthocli {command}")))
        return EXIT_USAGE
    if isinstance(e, Exception):
        error(f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback and report it)")
        return EXIT_INTERNAL
    return None


def stdout_to_devnull() -> None:
    """After a broken pipe: what is still buffered for stdout goes nowhere, so that Python's exit
    does not print "Exception ignored ... BrokenPipeError" (the note on SIGPIPE in Python's docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (the test runner's capture)
        pass


def stdout_is_devnull() -> bool:
    try:
        out, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, AttributeError):
        return False
    return (out.st_dev, out.st_ino) == (null.st_dev, null.st_ino)
