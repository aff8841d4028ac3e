"""The Typer app: parses, calls the library, renders. Commands import torch inside their bodies."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from orthocli import __version__
from orthocli.cli import common

app = typer.Typer(
    name="orthocli",
    help="Score, prune and re-initialise conv filters by orthogonality, and train with RePr.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orthocli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback on errors (also ORTHOCLI_DEBUG=1).")] = False,
) -> None:
    common.DEBUG["on"] = debug or common.debug_from_env()


# Registering the commands: each module adds itself to `app`.
from orthocli.cli import export as _export  # noqa: E402,F401
from orthocli.cli import prune as _prune  # noqa: E402,F401
from orthocli.cli import reinit as _reinit  # noqa: E402,F401
from orthocli.cli import score as _score  # noqa: E402,F401
from orthocli.cli import train as _train  # noqa: E402,F401


def main() -> None:
    app()
