"""`orthocli train`: the loop (loop.py), one invocation's runs and files (experiment.py) and
its options (options.py: the four groups and `RunMeta`, which --resume reads), the paired runs of
`--seeds N` (paired_runs.py) with their statistics (stats.py) and verdict (verdicts.py), devices
and torchrun (runtime.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orthocli.faces import lazy_names

_WHERE = {
    "train": "orthocli.training.loop",
    "evaluate": "orthocli.training.loop",
    "phases": "orthocli.training.loop",
    "DataOptions": "orthocli.training.options",
    "Experiment": "orthocli.training.experiment",
    "HardwareOptions": "orthocli.training.options",
    "ModelOptions": "orthocli.training.options",
    "OutputOptions": "orthocli.training.options",
    "RedundancyNote": "orthocli.training.experiment",
    "Reporter": "orthocli.training.experiment",
    "RunMeta": "orthocli.training.options",
    "STATE_EVERY": "orthocli.training.options",
    "state_path": "orthocli.training.experiment",
    "COMPARISONS": "orthocli.training.paired_runs",
    "run_seeds": "orthocli.training.paired_runs",
    "Runtime": "orthocli.training.runtime",
    "resolve_device": "orthocli.training.runtime",
    "resolve_precision": "orthocli.training.runtime",
    "paired": "orthocli.training.stats",
    "verdict": "orthocli.training.verdicts",
}
__all__ = [
    "COMPARISONS",
    "DataOptions",
    "Experiment",
    "HardwareOptions",
    "ModelOptions",
    "OutputOptions",
    "RedundancyNote",
    "Reporter",
    "RunMeta",
    "Runtime",
    "STATE_EVERY",
    "evaluate",
    "paired",
    "phases",
    "resolve_device",
    "resolve_precision",
    "run_seeds",
    "state_path",
    "train",
    "verdict",
]

if TYPE_CHECKING:
    from orthocli.training.experiment import Experiment, RedundancyNote, Reporter, state_path
    from orthocli.training.loop import evaluate, phases, train
    from orthocli.training.options import (
        STATE_EVERY,
        DataOptions,
        HardwareOptions,
        ModelOptions,
        OutputOptions,
        RunMeta,
    )
    from orthocli.training.paired_runs import COMPARISONS, run_seeds
    from orthocli.training.runtime import Runtime, resolve_device, resolve_precision
    from orthocli.training.stats import paired
    from orthocli.training.verdicts import verdict

__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
