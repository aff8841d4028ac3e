"""The default drop rule, written once. `orthocli prune` and `orthocli train` (their options and
`TrainConfig`) and the library (`drops.DropRule`, `drops.plan_drops`) all read DEFAULT_DROP,
so the steps run one by one drop the filters that `train`'s cycle drops. No torch here: the
commands' option defaults are read when `--help` is built.

Which filters drop is adaptive by default: no ratio and no threshold means each layer drops the
share of its filters by which it is more redundant than random filters of its shape (at most
ADAPTIVE_CAP of the layer; `drops.DropRule`). Of the rules measured in docs/results.md it had the
highest mean gain over the unsaturated data sets and was the only one with no loss outside its
interval anywhere; a fixed ratio (`--ratio`) or a threshold (`--threshold`) replaces it."""

from __future__ import annotations

from dataclasses import dataclass

# The most the adaptive rule drops of a layer at once: the patent's 30%. Filters of thousands of
# weights lie far above the chance score without being copies (crepe_tiny: 50-70% of a layer).
ADAPTIVE_CAP = 0.3


@dataclass(frozen=True)
class DropDefaults:
    scope: str = "layer"  # "layer": each layer by itself (held up best in benchmarks/); "global": the authors' ranking
    min_keep: int = 1  # filters every layer keeps
    skip_first: bool = True  # leave the first conv alone: its few input dims make its filters look redundant
    skip_last: bool = True  # a bare state dict's last conv is left alone: it likely produces the model's outputs


DEFAULT_DROP = DropDefaults()
