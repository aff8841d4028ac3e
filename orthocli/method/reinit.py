"""`orthocli reinit` as a library function: re-introduce the dropped filters of a pruned
checkpoint (the second half of the method's step 4, "re-introduce"), write the result, return what was done."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from orthocli.config import ReprConfig
from orthocli.errors import CheckpointError, UsageError


@dataclass
class ReinitLayer:
    name: str
    dropped: int  # filters re-introduced
    null_space: int  # of them, orthogonal to the kept filters and the old values
    kept_only: int  # orthogonal to the kept filters only (no room left for more)
    random: int  # random directions (no room at all)
    fan_out_zeroed: bool = False  # the network's output was kept: readers zeroed, or the branch silenced
    # what the layers reading them got: "zeroed", "silenced" (a residual branch's BatchNorm starts at
    # 0), "kept" (--reinit-fan-out keep), "unknown" (not found; `fan_out_note` says why)
    fan_out: str = "unknown"
    fan_out_note: str | None = None

    @property
    def fallback(self) -> bool:
        return self.null_space < self.dropped


@dataclass
class ReinitReport:
    checkpoint: Path
    output: Path
    seed: int
    cycle: int
    layers: list[ReinitLayer]

    @property
    def fell_back(self) -> list[str]:
        """Layers where the null space had no room for every filter."""
        return [layer.name for layer in self.layers if layer.fallback]

    def to_json(self) -> dict:
        return {
            "checkpoint": str(self.checkpoint),
            "output": str(self.output),
            "seed": self.seed,
            "cycle": self.cycle,
            "layers": [{**asdict(layer), "fallback": layer.fallback} for layer in self.layers],
        }


def reinit(
    source: str | os.PathLike,
    output: str | os.PathLike,
    config: ReprConfig | None = None,
    *,
    cycle: int = 1,
    force: bool = False,
    trust: bool = False,
) -> ReinitReport:
    """Re-introduce the filters `source` dropped, by `config`'s re-introduction options
    (`reinit_scale`, `reinit_fan_out`, `seed`; default: train's); write the checkpoint to `output`.
    The random directions come from the generator `orthocli train --seed seed` uses in its cycle
    `cycle` (`seeding.reinit_seed`), so the steps run one by one give `train`'s values. `trust`:
    `source` may hold a pickled model (pruned from one), read only then and kept in `output`."""
    import torch

    import orthocli.checkpoints.checkpoint as ckpt_io
    from orthocli.atomic import check_output
    from orthocli.method.subnet import reintroduce
    from orthocli.seeding import reinit_seed

    config = config if config is not None else ReprConfig()
    if cycle < 1:
        raise UsageError(f"--cycle must be at least 1, got {cycle}")
    check_output(output, force=force, inputs=[source])
    ckpt = ckpt_io.load(source, trust=trust)  # a TorchScript or pickled-object source runs code: --trust only
    record = ckpt.extras.get("prune")
    if not record:
        raise CheckpointError(f"{source}: has no dropped filters to re-introduce; make one with 'orthocli prune'")
    generator = torch.Generator().manual_seed(reinit_seed(config.seed, cycle))
    # as train's re-introduction
    counts = reintroduce(ckpt.state_dict, record, generator, config.reinit_scale, config.reinit_fan_out, render=_flag)
    extras = {k: v for k, v in ckpt.extras.items() if k != "prune"}
    extras["reinit"] = {"seed": config.seed, "cycle": cycle, "scale": config.reinit_scale, "layers": counts}
    extras["module"] = ckpt_io.module_for(ckpt, output, ckpt.state_dict)  # a pickled model stays one
    ckpt_io.save(output, ckpt_io.make_payload(ckpt.state_dict, **extras), force=force, inputs=[source])
    layers = [ReinitLayer(name, **c) for name, c in counts.items()]
    return ReinitReport(Path(source), Path(output), config.seed, cycle, layers)


def _flag(field: str) -> str:
    """An option as `orthocli reinit`'s notes name it: its flag (`exclude` -> `--exclude`)."""
    from orthocli.config import option_name

    return "--" + option_name(field).replace("_", "-")
