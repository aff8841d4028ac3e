"""The command line. `main` is the console script: `orthocli score` with the options a CI gate
uses runs without Typer or Rich (fast_args.py parses them; anything it does not fully understand,
--help and every error included, goes to the Typer app in commands.py, so there is one set of
messages). Importing this package imports neither: `app` is loaded on first use."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    app: typer.Typer


def main() -> None:
    from orthocli.cli.fast_args import score_args

    args = score_args(sys.argv[1:])
    if args is not None:
        from orthocli.cli.score_run import run_guarded

        sys.exit(run_guarded(args))
    from orthocli.cli.commands import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":
        from orthocli.cli.commands import app

        globals()["app"] = app
        return app
    raise AttributeError(f"module 'orthocli.cli' has no attribute {name!r}")
