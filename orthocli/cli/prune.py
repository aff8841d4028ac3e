"""`orthocli prune`: drop the most redundant filters into a sub-network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from orthocli.cli import app
from orthocli.cli.common import (
    CkptArg,
    ExcludeOpt,
    ForceOpt,
    JsonOpt,
    KeyOpt,
    LayersOpt,
    TrustOpt,
    command,
    log,
    print_json,
    stdout,
)
from orthocli.cli.options import MinKeepOpt, RatioOpt, ScopeOpt, SkipFirstOpt, ThresholdOpt
from orthocli.droprule import DEFAULT_DROP
from orthocli.errors import UsageError

EPILOG = (
    "Example: orthocli prune model.pt -o pruned.pt --ratio 0.3 --scope global\n\n"
    "Plan only: orthocli prune model.pt --dry-run --json"
)


@command(app, epilog=EPILOG)
def prune(
    checkpoint: CkptArg,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Where to write the pruned checkpoint.", show_default=False)
    ] = None,
    ratio: RatioOpt = DEFAULT_DROP.ratio,
    threshold: ThresholdOpt = None,
    scope: ScopeOpt = DEFAULT_DROP.scope,
    min_keep: MinKeepOpt = DEFAULT_DROP.min_keep,
    skip_first: SkipFirstOpt = DEFAULT_DROP.skip_first,
    layers: LayersOpt = None,
    exclude: ExcludeOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Print the plan; write nothing.")] = False,
    force: ForceOpt = False,
    key: KeyOpt = None,
    trust: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Drop the most redundant filters into a sub-network (masked, kept for reinit)."""
    from orthocli import checkpoint as ckpt_io
    from orthocli.pruning import make_rule, plan_drops
    from orthocli.subnet import apply_drops, make_record

    if output is None and not dry_run:
        raise UsageError("give -o/--output for the pruned checkpoint, or --dry-run to only print the plan")
    rule = make_rule(ratio, threshold, scope, min_keep)
    if output is not None and not dry_run:
        ckpt_io.check_output(output, force=force, inputs=[checkpoint])
    ckpt = ckpt_io.load(checkpoint, key=key, trust=trust)
    if "prune" in ckpt.extras:
        raise UsageError(f"{checkpoint}: already pruned; run 'orthocli reinit' (or train) on it first")
    plan = plan_drops(ckpt.select_convs(), rule, include=layers, exclude=exclude, skip_first=skip_first)
    doc = {"checkpoint": str(checkpoint), "output": None if dry_run else str(output), **plan.to_json()}
    if not dry_run:
        record = make_record(ckpt.state_dict, ckpt_io.filter_banks(ckpt), plan.drops, plan.rule_dict())
        apply_drops(ckpt.state_dict, record)
        extras = ckpt.extras or {"source": {"path": str(checkpoint), "format": ckpt.format, "key": ckpt.key}}
        ckpt_io.save(
            output,
            ckpt_io.make_payload(ckpt.state_dict, **{**extras, "prune": record}),
            force=force,
            inputs=[checkpoint],
        )
    if json_out:
        print_json(doc)
    else:
        _render(doc)
    if not dry_run:
        log(f"Wrote {output}: {plan.total_dropped} of {plan.total_filters} filters dropped")


def _render(doc: dict) -> None:
    from rich.table import Table

    table = Table(
        title=f"Drop plan: {doc['total']['dropped']} of {doc['total']['filters']} filters ({doc['rule']['scope']} ranking)"
    )
    for col in ("layer", "filters", "dropped", "kept", "dropped filters"):
        table.add_column(col, justify="left" if col in ("layer", "dropped filters") else "right", overflow="fold")
    for layer in doc["layers"]:
        shown = ", ".join(map(str, layer["dropped"][:16])) + (" ..." if len(layer["dropped"]) > 16 else "")
        table.add_row(layer["name"], str(layer["filters"]), str(len(layer["dropped"])), str(layer["kept"]), shown)
    for name in doc["excluded"]:
        table.add_row(name, "", "-", "", "excluded")
    stdout().print(table)
