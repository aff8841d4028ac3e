"""`orthocli score`: how redundant is each conv filter, in one checkpoint or many?

The Typer command: its options and help. The body is score_run.py's, which the fast path
(fast_args.py) calls too; checkpoints are read without torch (numpy_checkpoint.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from orthocli.cli.common import CkptsArg, ExcludeOpt, ForceOpt, JsonOpt, KeyOpt, LayersOpt, TrustOpt, command

EPILOG = (
    "Example: orthocli score sample_models/mnist1d_convnet.safetensors --top 5 --json\n\n"
    "CI gate: orthocli score runs/ --exclude conv1 --fail-above 0.4  (exit 1 when a layer's mean is above 0.4"
    " in any checkpoint of runs/; 2, 3, 4 or 6 when one cannot be scored)\n\n"
    "Regressions only: orthocli score runs/ --against main.json --tolerance 0.02  (main.json: an earlier --json report)\n\n"
    "Pictures: orthocli score model.pt --plot model.png  (or a folder: one <stem>.png per checkpoint)"
)


@command
def score(
    checkpoints: CkptsArg,
    layers: LayersOpt = None,
    exclude: ExcludeOpt = None,
    top: Annotated[
        int,
        typer.Option(
            "--top",
            "-k",
            min=0,
            help="How many filters to list: those furthest above their layer's random-filter level (score / random),"
            " from the layers the drop rule considers (the first conv layer is not one).",
        ),
    ] = 10,
    fail_above: Annotated[
        Optional[float],
        typer.Option(
            "--fail-above",
            min=0.0,
            max=1.0,
            help="Exit with code 1 when any scored layer's mean score is above this bound, in any checkpoint.",
            show_default=False,
        ),
    ] = None,
    against: Annotated[
        Optional[Path],
        typer.Option(
            "--against",
            help="A report that 'score --json' wrote earlier: exit with code 1 when a layer's mean score rose by more"
            " than --tolerance over it (checkpoints matched by path; new ones are not compared).",
            show_default=False,
        ),
    ] = None,
    tolerance: Annotated[
        Optional[float],
        typer.Option(
            "--tolerance",
            min=0.0,
            help="With --against: how much a layer's mean score may rise before it fails (default 0.01).",
            show_default=False,
        ),
    ] = None,
    key: KeyOpt = None,
    trust: TrustOpt = False,
    plot: Annotated[
        Optional[Path],
        typer.Option(
            "--plot",
            help="Draw each conv layer's |cosine| matrix between filters (ordered by score) and its score histogram"
            " against random filters' level: to this PNG, or with several checkpoints into this folder, one"
            " <stem>.png each (needs matplotlib: pip install 'orthocli\\[plot]').",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
    output_format: Annotated[
        Optional[Literal["table", "json", "github"]],
        typer.Option(
            "--format",
            help="table (default), json (as --json), or github: GitHub Actions annotations on stdout for each"
            " failing layer and unreadable file.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Score every conv filter by inter-filter orthogonality (higher = more redundant)."""
    from orthocli.cli.score_run import ScoreArgs, run

    args = ScoreArgs(
        checkpoints=list(checkpoints),
        layers=list(layers) if layers else None,
        exclude=list(exclude) if exclude else None,
        top=top,
        fail_above=fail_above,
        against=against,
        tolerance=tolerance,
        key=key,
        trust=trust,
        json_out=json_out,
        output_format=output_format,
        plot=plot,
        force=force,
    )
    code = run(args)
    if code:
        raise typer.Exit(code)
