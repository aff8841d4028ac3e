"""orthocli: score, prune and re-initialise convolutional filters by orthogonality (RePr).

The method (docs/method.md), in five steps that the code refers to by name:

1. Acquire: read the weights of every layer (checkpoint.py) or build the model (models.py).
2. Score: every conv filter by inter-filter orthogonality (orthogonality.py, layer_scores.py).
3. Drop: move the most redundant filters into a sub-network (drops.py counts and ranking.py
   chooses by the options of config.py; subnet.py and masking.py mask and freeze; controller.py runs
   the schedule in any training loop).
4. Re-introduce: train the sub-network, then give the dropped filters new values from the null
   space of the layer's filters (subnet.py, nullspace.py) and train on.
5. Output: the network once training has converged (training.py, experiment.py).

"The patent" in comments is the patent text describing the method (claims 1-7); "the paper" is
RePr (Prakash et al., CVPR 2019).

The Python API (docs/api.md) is exported here and imported on first use, so `import orthocli`
(and `orthocli --help`) loads no torch:

    from orthocli import RePr, ReprConfig          # the controller a training loop drives
    from orthocli import score, plan_drops, drop, reinitialize, SubNetwork
    from orthocli import ReprCallback              # Lightning (pip install 'orthocli[lightning]')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Cycle",
    "DropPlan",
    "RePr",
    "ReprCallback",
    "ReprConfig",
    "SubNetwork",
    "drop",
    "plan_drops",
    "reinitialize",
    "score",
]

_WHERE = {
    "Cycle": "orthocli.controller",
    "RePr": "orthocli.controller",
    "ReprConfig": "orthocli.config",
    "SubNetwork": "orthocli.subnet",
    "DropPlan": "orthocli.drops",
    "drop": "orthocli.api",
    "plan_drops": "orthocli.api",
    "reinitialize": "orthocli.api",
    "score": "orthocli.api",
    "ReprCallback": "orthocli.lightning_callback",
}

if TYPE_CHECKING:
    from orthocli.api import drop, plan_drops, reinitialize, score
    from orthocli.config import ReprConfig
    from orthocli.controller import Cycle, RePr
    from orthocli.drops import DropPlan
    from orthocli.lightning_callback import ReprCallback
    from orthocli.subnet import SubNetwork


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'orthocli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
