"""`orthocli prune` as a library function: choose the drops, mask them in the weights, write the
pruned checkpoint with its drop record (extras "prune"), return what was done."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orthocli.config import ReprConfig
from orthocli.errors import UsageError
from orthocli.method.drops import DropPlan, plan_drops


@dataclass
class PruneReport:
    checkpoint: Path
    output: Path | None  # None for a dry run
    plan: DropPlan

    def to_json(self, name=str) -> dict:
        """Plain values; `name` renders option names in the reasons (the CLI passes its flags)."""
        return {
            "checkpoint": str(self.checkpoint),
            "output": None if self.output is None else str(self.output),
            **self.plan.to_json(name),
        }


def prune(
    source: str | os.PathLike,
    output: str | os.PathLike | None,
    config: ReprConfig | None = None,
    *,
    key: str | None = None,
    trust: bool = False,
    force: bool = False,
) -> PruneReport:
    """Drop filters of `source` by `config`'s drop rule, ranking and layer choice (default: the
    defaults `orthocli prune` and `orthocli train` use) and write the result to `output`; with no
    output, only plan."""
    import orthocli.checkpoints.checkpoint as ckpt_io
    from orthocli.atomic import check_output
    from orthocli.checkpoints.model import CheckpointModel
    from orthocli.method.filter_statistics import bn_scales
    from orthocli.method.ranking import BN_SCALE, BY_NAME, needs
    from orthocli.method.subnet import apply_drops, make_record

    config = config if config is not None else ReprConfig()
    if output is not None:
        check_output(output, force=force, inputs=[source])
    ckpt = ckpt_io.load(source, key=key, trust=trust)
    if "prune" in ckpt.extras:
        raise UsageError(f"{source}: already pruned; run 'orthocli reinit' (or train) on it first")
    view = CheckpointModel(ckpt, trust=trust)
    scales = bn_scales(view.banks(), ckpt.state_dict) if BN_SCALE in needs(BY_NAME[config.ranking]) else None
    plan = plan_drops(view.select_convs(), config, fixed=view.fixed_layers(), bn_scales=scales)
    if output is not None:
        record = make_record(ckpt.state_dict, view.banks(), plan.drops, plan.rule_dict(), view.graph)
        apply_drops(ckpt.state_dict, record)
        extras = ckpt.extras or {"source": {"path": str(source), "format": ckpt.format, "key": ckpt.key}}
        module = ckpt_io.module_for(ckpt, output, ckpt.state_dict)  # a pickled model stays one
        payload = ckpt_io.make_payload(ckpt.state_dict, **{**extras, "prune": record, "module": module})
        ckpt_io.save(output, payload, force=force, inputs=[source])
    return PruneReport(Path(source), None if output is None else Path(output), plan)
