"""`orthocli reinit`: re-introduce dropped filters orthogonally."""

from __future__ import annotations

from typing import Annotated

import typer

from orthocli.cli.common import (
    CkptArg,
    ForceOpt,
    JsonOpt,
    OutOpt,
    TrustOpt,
    command,
    log,
    name_column,
    print_json,
    print_table,
)
from orthocli.cli.options import DEFAULTS, ReinitFanOutOpt, ReinitScaleOpt

EPILOG = "Example: orthocli reinit pruned.pt -o reinit.pt --seed 0"


@command
def reinit(
    checkpoint: CkptArg,
    output: OutOpt,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed for the random directions inside the null space: the values 'orthocli train --seed S' gives"
            " in its cycle --cycle.",
        ),
    ] = DEFAULTS.seed,
    cycle: Annotated[
        int, typer.Option("--cycle", min=1, help="Re-initialise as cycle K of 'orthocli train --seed S' does.")
    ] = 1,
    reinit_scale: ReinitScaleOpt = DEFAULTS.reinit_scale,
    reinit_fan_out: ReinitFanOutOpt = DEFAULTS.reinit_fan_out,
    force: ForceOpt = False,
    trust: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-introduce dropped filters from the null space of the kept ones (QR)."""
    from orthocli.config import ReprConfig
    from orthocli.reinit import reinit as run_reinit

    config = ReprConfig(seed=seed, reinit_scale=reinit_scale, reinit_fan_out=reinit_fan_out)
    report = run_reinit(checkpoint, output, config, cycle=cycle, force=force, trust=trust)
    doc = report.to_json()
    if json_out:
        print_json(doc)
    else:
        _render(doc["layers"])
    if report.fell_back:
        log(
            f"No room in the null space for every filter in: {', '.join(report.fell_back)} (see the kept_only / random "
            "columns)"
        )
    for layer in report.layers:
        if layer.fan_out == "unknown":
            log(
                f"Note: {layer.name}: the network's output changes at this re-introduction, because"
                f" {layer.fan_out_note or 'the layers reading its channels are unknown'}"
            )
    log(f"Wrote {output}")


def _render(layers: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="Re-introduced filters (null space = orthogonal to kept filters and old values)")
    name_column(table, "layer")
    for col in ("re-introduced", "null space", "kept only", "random"):
        table.add_column(col, justify="right", overflow="fold")
    for layer in layers:
        table.add_row(
            layer["name"],
            str(layer["dropped"]),
            str(layer["null_space"]),
            str(layer["kept_only"]),
            str(layer["random"]),
        )
    print_table(table)
