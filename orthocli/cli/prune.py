"""`orthocli prune`: drop the most redundant filters into a sub-network."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from orthocli.cli.common import (
    CkptArg,
    ExcludeOpt,
    ForceOpt,
    JsonOpt,
    KeyOpt,
    LayersOpt,
    TrustOpt,
    command,
    flag,
    log,
    name_column,
    output_folder,
    print_json,
    print_table,
)
from orthocli.cli.config_file import config_option, from_toml
from orthocli.cli.options import (
    DEFAULTS,
    MinKeepOpt,
    RankingOpt,
    RatioOpt,
    ScopeOpt,
    SkipFirstOpt,
    SkipLastOpt,
    ThresholdOpt,
    config_from,
)
from orthocli.errors import UsageError

EPILOG = (
    "Example: orthocli prune model.pt -o pruned.pt --ratio 0.3 --scope global\n\n"
    "Plan only: orthocli prune model.pt --dry-run --json"
)

ConfigOpt = config_option("ratio = 0.3")


@command
def prune(
    ctx: typer.Context,
    checkpoint: CkptArg,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Where to write the pruned checkpoint.", show_default=False)
    ] = None,
    ratio: RatioOpt = None,
    threshold: ThresholdOpt = None,
    scope: ScopeOpt = DEFAULTS.scope,
    min_keep: MinKeepOpt = DEFAULTS.min_keep,
    ranking: RankingOpt = DEFAULTS.ranking,
    skip_first: SkipFirstOpt = DEFAULTS.skip_first,
    skip_last: SkipLastOpt = DEFAULTS.skip_last,
    layers: LayersOpt = None,
    exclude: ExcludeOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Print the plan; write nothing.")] = False,
    force: ForceOpt = False,
    key: KeyOpt = None,
    trust: TrustOpt = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Drop the most redundant filters into a sub-network (masked, kept for reinit)."""
    if config is not None:  # once more, with the file's values for the options not given on the command line
        return prune(ctx, **{**ctx.params, **from_toml(ctx, config), "config": None})
    params = dict(locals())  # the parameters, by name: the method's options among them
    from orthocli.config import ReprConfig
    from orthocli.method.prune import prune as run_prune

    if output is None and not dry_run:
        raise UsageError("give -o/--output for the pruned checkpoint, or --dry-run to only print the plan")
    config = config_from(ReprConfig, params)
    output_folder(None if dry_run else output)  # a missing folder is created, as every command's
    report = run_prune(checkpoint, None if dry_run else output, config, key=key, trust=trust, force=force)
    doc = report.to_json(flag)
    if json_out:
        print_json(doc)
    else:
        _render(doc)
    if not dry_run:
        log(f"Wrote {output}: {report.plan.total_dropped} of {report.plan.total_filters} filters dropped")


def _rule_text(rule: dict) -> str:
    if rule["adaptive"]:
        return "each layer's redundancy above random filters'"
    how = f"ratio {rule['ratio']}" if rule["ratio"] is not None else f"threshold {rule['threshold']}"
    return f"{how}, {rule['scope']} ranking"


def _render(doc: dict) -> None:
    from rich.table import Table

    table = Table(
        title=f"Drop plan: {doc['total']['dropped']} of {doc['total']['filters']} filters ({_rule_text(doc['rule'])})"
    )
    name_column(table, "layer")
    # mean score against random filters': what the default (adaptive) rule goes by
    for col in ("filters", "mean", "random", "dropped", "kept"):
        table.add_column(col, justify="right", overflow="fold")
    table.add_column("dropped filters", overflow="fold")
    for layer in doc["layers"]:
        shown = ", ".join(map(str, layer["dropped"][:16])) + (" ..." if len(layer["dropped"]) > 16 else "")
        counts = (str(layer["filters"]), f"{layer['mean']:.3f}", f"{layer['chance']:.3f}")
        table.add_row(layer["name"], *counts, str(len(layer["dropped"])), str(layer["kept"]), shown)
    for layer in doc["left_out"]:
        table.add_row(layer["name"], "", "", "", "-", "", f"excluded: {layer['reason']}")
    print_table(table)
