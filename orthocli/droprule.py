"""The default drop rule, written once. `orthocli prune` and `orthocli train` (their options and
`TrainConfig`) and the library (`drops.DropRule`, `drops.plan_drops`) all read DEFAULT_DROP,
so the steps run one by one drop the filters that `train`'s cycle drops. No torch here: the
commands' option defaults are read when `--help` is built."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DropDefaults:
    # fraction of the candidate filters dropped (per cycle in `train`). The patent says 30%; 10% had the
    # higher mean gain over the unsaturated data sets of docs/results.md (round 3), and no loss outside
    # its interval on them
    ratio: float = 0.1
    scope: str = "layer"  # "layer": the ratio of each layer (held up best in benchmarks/); "global": the authors'
    min_keep: int = 1  # filters every layer keeps
    skip_first: bool = True  # leave the first conv alone: its few input dims make its filters look redundant
    skip_last: bool = True  # a bare state dict's last conv is left alone: it likely produces the model's outputs


DEFAULT_DROP = DropDefaults()
