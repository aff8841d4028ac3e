"""The method's steps (docs/method.md): Score (orthogonality.py, layer_scores.py), Drop
(drops.py, ranking.py), the sub-network (subnet.py, masking.py; what reads a channel: network/fan_out.py), Re-introduce
(nullspace.py), whether there is anything to remove (redundancy.py), the `RePr` controller that runs
the schedule in any training loop (controller.py), and the library side of `prune` and `reinit`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orthocli.faces import lazy_names

_WHERE = {
    "DEAD_SCORE": "orthocli.method.orthogonality",
    "chance_score": "orthocli.method.orthogonality",
    "dead_filters": "orthocli.method.orthogonality",
    "filter_rows": "orthocli.method.orthogonality",
    "orthogonality_scores": "orthocli.method.orthogonality",
    "LayerScores": "orthocli.method.layer_scores",
    "gate_failures": "orthocli.method.layer_scores",
    "most_redundant": "orthocli.method.layer_scores",
    "score_layers": "orthocli.method.layer_scores",
    "BY_NAME": "orthocli.method.ranking",
    "LayerFacts": "orthocli.method.ranking",
    "Ranking": "orthocli.method.ranking",
    "DropPlan": "orthocli.method.drops",
    "choose_drops": "orthocli.method.drops",
    "drop_counts": "orthocli.method.drops",
    "plan_drops": "orthocli.method.drops",
    "SubNetwork": "orthocli.method.subnet",
    "apply_drops": "orthocli.method.subnet",
    "make_record": "orthocli.method.subnet",
    "reintroduce": "orthocli.method.subnet",
    "masks_from_record": "orthocli.method.masking",
    "masked_model": "orthocli.method.masking",
    "filter_scale": "orthocli.method.nullspace",
    "new_filters": "orthocli.method.nullspace",
    "null_space_basis": "orthocli.method.nullspace",
    "row_space_basis": "orthocli.method.nullspace",
    "Redundancy": "orthocli.method.redundancy",
    "assess": "orthocli.method.redundancy",
    "live_means": "orthocli.method.redundancy",
    "watched_layers": "orthocli.method.redundancy",
    "Cycle": "orthocli.method.controller",
    "RePr": "orthocli.method.controller",
    "prune": "orthocli.method.prune",
    "reinit": "orthocli.method.reinit",
}
__all__ = [
    "BY_NAME",
    "Cycle",
    "DEAD_SCORE",
    "DropPlan",
    "LayerFacts",
    "LayerScores",
    "Ranking",
    "RePr",
    "Redundancy",
    "SubNetwork",
    "apply_drops",
    "assess",
    "chance_score",
    "choose_drops",
    "dead_filters",
    "drop_counts",
    "filter_rows",
    "filter_scale",
    "gate_failures",
    "live_means",
    "make_record",
    "masked_model",
    "masks_from_record",
    "most_redundant",
    "new_filters",
    "null_space_basis",
    "orthogonality_scores",
    "plan_drops",
    "prune",
    "reinit",
    "reintroduce",
    "row_space_basis",
    "score_layers",
    "watched_layers",
]

if TYPE_CHECKING:
    from orthocli.method.controller import Cycle, RePr
    from orthocli.method.drops import DropPlan, choose_drops, drop_counts, plan_drops
    from orthocli.method.layer_scores import LayerScores, gate_failures, most_redundant, score_layers
    from orthocli.method.masking import masked_model, masks_from_record
    from orthocli.method.nullspace import filter_scale, new_filters, null_space_basis, row_space_basis
    from orthocli.method.orthogonality import DEAD_SCORE, chance_score, dead_filters, filter_rows, orthogonality_scores
    from orthocli.method.prune import prune
    from orthocli.method.ranking import BY_NAME, LayerFacts, Ranking
    from orthocli.method.redundancy import Redundancy, assess, live_means, watched_layers
    from orthocli.method.reinit import reinit
    from orthocli.method.subnet import SubNetwork, apply_drops, make_record, reintroduce

__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
