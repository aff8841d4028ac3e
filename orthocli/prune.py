"""`orthocli prune` as a library function: choose the drops, mask them in the weights, write the
pruned checkpoint with its drop record (extras "prune"), return what was done."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orthocli.droprule import DEFAULT_DROP
from orthocli.drops import DropPlan, DropRule, plan_drops
from orthocli.errors import UsageError


@dataclass
class PruneReport:
    checkpoint: Path
    output: Path | None  # None for a dry run
    plan: DropPlan

    def to_json(self) -> dict:
        return {
            "checkpoint": str(self.checkpoint),
            "output": None if self.output is None else str(self.output),
            **self.plan.to_json(),
        }


def prune(
    source: str | os.PathLike,
    output: str | os.PathLike | None,
    rule: DropRule = DropRule(),  # frozen: one shared default is safe
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    skip_first: bool = DEFAULT_DROP.skip_first,
    skip_last: bool = DEFAULT_DROP.skip_last,
    key: str | None = None,
    trust: bool = False,
    force: bool = False,
) -> PruneReport:
    """Drop filters of `source` by `rule` (default: the default rule, as `orthocli prune` and `orthocli
    train` use) and write the result to `output`; with no output, only plan."""
    from orthocli import checkpoint as ckpt_io
    from orthocli.atomic import check_output
    from orthocli.banks import banks_of
    from orthocli.candidates import fixed_or_none
    from orthocli.layers import select_convs
    from orthocli.models import model_of
    from orthocli.subnet import apply_drops, make_record

    if output is not None:
        check_output(output, force=force, inputs=[source])
    ckpt = ckpt_io.load(source, key=key, trust=trust)
    if "prune" in ckpt.extras:
        raise UsageError(f"{source}: already pruned; run 'orthocli reinit' (or train) on it first")
    plan = plan_drops(
        select_convs(ckpt),
        rule,
        include=include,
        exclude=exclude,
        skip_first=skip_first,
        skip_last=skip_last,
        fixed=fixed_or_none(model_of(ckpt)),
    )
    if output is not None:
        record = make_record(ckpt.state_dict, banks_of(ckpt), plan.drops, plan.rule_dict())
        apply_drops(ckpt.state_dict, record)
        extras = ckpt.extras or {"source": {"path": str(source), "format": ckpt.format, "key": ckpt.key}}
        payload = ckpt_io.make_payload(ckpt.state_dict, **{**extras, "prune": record})
        ckpt_io.save(output, payload, force=force, inputs=[source])
    return PruneReport(Path(source), None if output is None else Path(output), plan)
