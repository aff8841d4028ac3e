"""`orthocli score`: how redundant is each conv filter, in one checkpoint or many?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from orthocli.cli.common import (
    CkptsArg,
    ExcludeOpt,
    ForceOpt,
    JsonOpt,
    KeyOpt,
    LayersOpt,
    TrustOpt,
    command,
    error,
    log,
    name_column,
    print_json,
    print_table,
    stdout,
)
from orthocli.errors import EXIT_GATE_FAILED, OrthoError

if TYPE_CHECKING:
    from orthocli.checkpoint_scores import CheckpointScores

SCHEMA_VERSION = 2  # 2: one document for any number of checkpoints, a list under "checkpoints"

EPILOG = (
    "Example: orthocli score sample_models/mnist1d_convnet.safetensors --top 5 --json\n\n"
    "CI gate: orthocli score runs/ --exclude conv1 --fail-above 0.4  (exit 1 when a layer's mean is above 0.4"
    " in any checkpoint of runs/; 3, 4 or 6 when one cannot be scored)\n\n"
    "Pictures: orthocli score model.pt --plot model.png  (or a folder: one <stem>.png per checkpoint)"
)


@command
def score(
    checkpoints: CkptsArg,
    layers: LayersOpt = None,
    exclude: ExcludeOpt = None,
    top: Annotated[
        int, typer.Option("--top", "-k", min=0, help="How many of the most redundant filters to list.")
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
) -> None:
    """Score every conv filter by inter-filter orthogonality (higher = more redundant)."""
    from orthocli.checkpoint_files import expand
    from orthocli.checkpoint_scores import combined_exit_code, score_checkpoint, unreadable_json

    targets = expand(checkpoints)
    pictures = None
    if plot is not None:  # every picture's path checked before anything is scored
        from orthocli.score_pictures import draw_picture, plan_pictures

        pictures = plan_pictures(plot, [t.path for t in targets], force=force)
    entries, codes, failed = [], [], []
    for i, target in enumerate(targets):
        try:
            if target.error is not None:
                raise target.error
            result = score_checkpoint(
                target.path, include=layers, exclude=exclude, key=key, trust=trust, top=top, fail_above=fail_above
            )
        except OrthoError as e:
            message = str(e) if str(target.path) in str(e) else f"{target.path}: {e}"
            error(message)
            codes.append(e.exit_code)
            entries.append(unreadable_json(target.path, e.exit_code, message))
            continue
        codes.append(result.exit_code)
        if pictures is not None:  # a picture that cannot be written stops the command (exit 5), as any output
            log(f"Picture: {draw_picture(pictures[i], result)}")
        if result.failing:
            failed.append(str(result.path))
            names = ", ".join(f"{r.layer.name} ({r.mean:.3f})" for r in result.failing)
            log(f"Redundancy gate failed: {result.path}: mean score above {fail_above} in {names}")
        if json_out:  # plain values only: the weights of one file are let go before the next loads
            entries.append(result.to_json())
        else:
            _render(result, several=len(targets) > 1)
        del result
    code = combined_exit_code(codes)
    if json_out:
        print_json(_document(entries, fail_above, failed, code))
    if len(targets) > 1 and code:
        _summary(code, codes, failed)
    if code:
        raise typer.Exit(code)


def _summary(code: int, codes: list[int], failed: list[str]) -> None:
    """The last stderr line of a run over several checkpoints that did not pass."""
    unusable = sum(1 for c in codes if c not in (0, EXIT_GATE_FAILED))
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(codes)} checkpoints failed the gate ({', '.join(failed)})")
    if unusable:
        parts.append(f"{unusable} of {len(codes)} could not be scored")
    log("; ".join(parts) + f"; exit code {code}")


def _document(entries: list[dict], bound: float | None, failed: list[str], code: int) -> dict:
    from orthocli import __version__

    scored = sum(1 for e in entries if e["error"] is None)
    return {
        "orthocli_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "exit_code": code,
        "checkpoints": entries,
        "summary": {"checkpoints": len(entries), "scored": scored, "errors": len(entries) - scored},
        "gate": None if bound is None else {"fail_above": bound, "passed": code == 0, "failing_checkpoints": failed},
    }


def _render(result: CheckpointScores, several: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    out = stdout()
    if several:
        out.print(Text(f"{result.path} ({result.format})", style="bold"), overflow="fold")
    table = Table(title="Filter redundancy per conv layer (0 = orthogonal, higher = redundant)")
    name_column(table, "layer")
    # "random": the mean that random filters of the layer's shape would score, the level to read a trained layer against
    for col in ("shape", "filters", "mean", "random", "max", "dead"):
        table.add_column(col, justify="left" if col == "shape" else "right", overflow="fold")
    for r in result.layers:
        shape = "x".join(str(d) for d in r.layer.weight.shape)
        means = (f"{r.mean:.4f}", f"{r.chance:.4f}", f"{r.max:.4f}")
        table.add_row(r.layer.name, shape, str(r.layer.filters), *means, str(len(r.dead)))
    print_table(table)
    for r in result.layers:  # under the table, not in a column: an 80-column table has no room for them
        if note := _notes(r):
            out.print(Text(f"{r.layer.name}: {note}"), overflow="fold")
    worst = result.most_redundant
    if worst:
        top = Table(title=f"{len(worst)} most redundant filters")
        name_column(top, "layer")
        top.add_column("filter", justify="right")
        top.add_column("score", justify="right")
        for name, f, s in worst:
            top.add_row(name, str(f), f"{s:.4f}")
        print_table(top)


def _notes(r) -> str:
    notes = []
    if r.layer.groups > 1:
        notes.append(f"groups={r.layer.groups}")
    if r.layer.transposed:
        notes.append("transposed")
    if r.overcomplete:
        notes.append("more filters than dimensions: they cannot all be orthogonal")
    return ", ".join(notes)
