"""`orthocli score`: how redundant is each conv filter?"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from orthocli.cli.common import (
    CkptArg,
    ExcludeOpt,
    JsonOpt,
    KeyOpt,
    LayersOpt,
    TrustOpt,
    command,
    log,
    print_json,
    stdout,
)
from orthocli.errors import EXIT_GATE_FAILED

EPILOG = (
    "Example: orthocli score sample_models/digits_convnet.safetensors --top 5 --json\n\n"
    "CI gate: orthocli score model.pt --exclude conv1 --fail-above 0.4  (exit 1 when a layer's mean is above 0.4)"
)


@command
def score(
    checkpoint: CkptArg,
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
            help="Exit with code 1 when any scored layer's mean score is above this bound.",
            show_default=False,
        ),
    ] = None,
    key: KeyOpt = None,
    trust: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Score every conv filter by inter-filter orthogonality (higher = more redundant)."""
    from orthocli import checkpoint as ckpt_io
    from orthocli.layer_scores import gate_failures, most_redundant, score_layers
    from orthocli.layers import select_convs

    ckpt = ckpt_io.load(checkpoint, key=key, trust=trust)
    results = score_layers(select_convs(ckpt, layers, exclude))
    failing = gate_failures(results, fail_above) if fail_above is not None else []
    worst = most_redundant(results, top)
    if json_out:
        print_json(_document(ckpt, results, worst, fail_above, failing))
    else:
        _render(results, worst)
    if failing:
        names = ", ".join(f"{r.layer.name} ({r.mean:.3f})" for r in failing)
        log(f"Redundancy gate failed: mean score above {fail_above} in {names}")
        raise typer.Exit(EXIT_GATE_FAILED)


def _document(ckpt, results, worst, bound, failing) -> dict:
    from orthocli import __version__

    scores = [s for r in results for s in r.scores.tolist()]
    return {
        "orthocli_version": __version__,
        "schema_version": 1,
        "checkpoint": str(ckpt.path),
        "format": ckpt.format,
        "layers": [r.to_json() for r in results],
        "most_redundant": [{"layer": n, "filter": f, "score": s} for n, f, s in worst],
        "summary": {
            "layers": len(results),
            "filters": len(scores),
            "dead": sum(len(r.dead) for r in results),
            "mean": sum(scores) / len(scores),
            "max": max(scores),
        },
        "gate": None
        if bound is None
        else {"fail_above": bound, "passed": not failing, "failing_layers": [r.layer.name for r in failing]},
    }


def _render(results, worst) -> None:
    from rich.table import Table

    table = Table(title="Filter redundancy per conv layer (score: 0 = orthogonal, higher = redundant)")
    for col, justify in [
        ("layer", "left"),
        ("shape", "left"),
        ("filters", "right"),
        ("mean", "right"),
        ("max", "right"),
        ("dead", "right"),
        ("note", "left"),
    ]:
        table.add_column(col, justify=justify, overflow="fold")
    for r in results:
        notes = []
        if r.layer.groups > 1:
            notes.append(f"groups={r.layer.groups}")
        if r.layer.transposed:
            notes.append("transposed")
        if r.overcomplete:
            notes.append("more filters than dimensions")
        shape = "x".join(str(d) for d in r.layer.weight.shape)
        table.add_row(
            r.layer.name,
            shape,
            str(r.layer.filters),
            f"{r.mean:.4f}",
            f"{r.max:.4f}",
            str(len(r.dead)),
            ", ".join(notes),
        )
    out = stdout()
    out.print(table)
    if worst:
        top = Table(title=f"{len(worst)} most redundant filters")
        for col in ("layer", "filter", "score"):
            top.add_column(col, justify="left" if col == "layer" else "right")
        for name, f, s in worst:
            top.add_row(name, str(f), f"{s:.4f}")
        out.print(top)
