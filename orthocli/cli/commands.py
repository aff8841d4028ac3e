"""The Typer app: parses, calls the library, renders. Commands import torch inside their bodies.
`orthocli score` on the common path does not come here (cli/__init__.py, fast_args.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

import orthocli.cli.common as common
import orthocli.cli.export as export
import orthocli.cli.prune as prune
import orthocli.cli.reinit as reinit
import orthocli.cli.score as score
import orthocli.cli.train as train
from orthocli import __version__

app = typer.Typer(
    cls=common.App,  # a usage error is one `Error: ...` line, exit 2
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


# Each command module exposes its function and EPILOG and knows nothing of the app; --help lists
# the commands in this order.
app.command("export", epilog=export.EPILOG, cls=common.Command)(export.export)
app.command("prune", epilog=prune.EPILOG, cls=common.Command)(prune.prune)
app.command("reinit", epilog=reinit.EPILOG, cls=common.Command)(reinit.reinit)
app.command("score", epilog=score.EPILOG, cls=common.Command)(score.score)
app.command("train", epilog=train.EPILOG, cls=common.Command)(train.train)
