"""orthocli: score, prune and re-initialise convolutional filters by orthogonality (RePr).

The method (docs/method.md), in five steps that the code refers to by name:

1. Acquire: read the weights of every layer (checkpoints/) or build the model (network/models.py).
2. Score: every conv filter by inter-filter orthogonality (method/orthogonality.py, layer_scores.py).
3. Drop: move the most redundant filters into a sub-network (method/: drops.py counts and ranking.py
   chooses by the options of config.py; subnet.py and masking.py mask and freeze; controller.py runs
   the schedule in any training loop).
4. Re-introduce: train the sub-network, then give the dropped filters new values from the null
   space of the layer's filters (method/subnet.py, nullspace.py) and train on.
5. Output: the network once training has converged (training/: loop.py, experiment.py).

The folders are the layers (docs/architecture.md): checkpoints/ (files; its readers/ need no torch),
network/ (the model's structure), method/ (the steps above), scoring/, training/, export/, data/,
and cli/ on top; the modules here are the options, errors and building blocks every layer shares,
and the public API.

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
    "Cycle": "orthocli.method.controller",
    "RePr": "orthocli.method.controller",
    "ReprConfig": "orthocli.config",
    "SubNetwork": "orthocli.method.subnet",
    "DropPlan": "orthocli.method.drops",
    "drop": "orthocli.api",
    "plan_drops": "orthocli.api",
    "reinitialize": "orthocli.api",
    "score": "orthocli.api",
    "ReprCallback": "orthocli.lightning_callback",
}

if TYPE_CHECKING:
    from orthocli.api import drop, plan_drops, reinitialize, score
    from orthocli.config import ReprConfig
    from orthocli.lightning_callback import ReprCallback
    from orthocli.method.controller import Cycle, RePr
    from orthocli.method.drops import DropPlan
    from orthocli.method.subnet import SubNetwork


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'orthocli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
