"""`orthocli reinit`: re-introduce dropped filters orthogonally."""

from __future__ import annotations

from typing import Annotated

import typer

from orthocli.cli import app
from orthocli.cli.common import CkptArg, ForceOpt, JsonOpt, OutOpt, command, log, print_json, stdout
from orthocli.cli.options import ReinitScaleOpt

EPILOG = "Example: orthocli reinit pruned.pt -o reinit.pt --seed 0"


@command(app, epilog=EPILOG)
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
    ] = 0,
    cycle: Annotated[
        int, typer.Option("--cycle", min=1, help="Re-initialise as cycle K of 'orthocli train --seed S' does.")
    ] = 1,
    scale: ReinitScaleOpt = 1.0,
    force: ForceOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Re-introduce dropped filters from the null space of the kept ones (QR)."""
    import torch

    from orthocli import checkpoint as ckpt_io
    from orthocli.errors import CheckpointError, UsageError
    from orthocli.subnet import reintroduce
    from orthocli.training import reinit_seed

    if not scale > 0:
        raise UsageError(f"--reinit-scale must be positive, got {scale}")
    ckpt_io.check_output(output, force=force, inputs=[checkpoint])
    ckpt = ckpt_io.load(checkpoint)
    record = ckpt.extras.get("prune")
    if not record:
        raise CheckpointError(f"{checkpoint}: has no dropped filters to re-introduce; make one with 'orthocli prune'")
    report = reintroduce(ckpt.state_dict, record, torch.Generator().manual_seed(reinit_seed(seed, cycle)), scale)
    extras = {k: v for k, v in ckpt.extras.items() if k != "prune"}
    extras["reinit"] = {"seed": seed, "cycle": cycle, "scale": scale, "layers": report}
    ckpt_io.save(output, ckpt_io.make_payload(ckpt.state_dict, **extras), force=force, inputs=[checkpoint])
    layers = [
        {"name": name, **counts, "fallback": counts["null_space"] < counts["dropped"]}
        for name, counts in report.items()
    ]
    if json_out:
        print_json(
            {"checkpoint": str(checkpoint), "output": str(output), "seed": seed, "cycle": cycle, "layers": layers}
        )
    else:
        _render(layers)
    fell_back = [layer["name"] for layer in layers if layer["fallback"]]
    if fell_back:
        log(
            f"No room in the null space for every filter in: {', '.join(fell_back)} (see the kept_only / random columns)"
        )
    log(f"Wrote {output}")


def _render(layers: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="Re-introduced filters (null space = orthogonal to kept filters and old values)")
    for col in ("layer", "re-introduced", "null space", "kept only", "random"):
        table.add_column(col, justify="left" if col == "layer" else "right", overflow="fold")
    for layer in layers:
        table.add_row(
            layer["name"],
            str(layer["dropped"]),
            str(layer["null_space"]),
            str(layer["kept_only"]),
            str(layer["random"]),
        )
    stdout().print(table)
