"""`orthocli score`: one checkpoint scored and gated (checkpoint_scores.py), `--against` a
stored report (stored_report.py), and `--plot` (pictures.py; the numbers in filter_similarity.py;
every picture, `train --plot`'s too, drawn in plot.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orthocli.faces import lazy_names

_WHERE = {
    "CheckpointScores": "orthocli.scoring.checkpoint_scores",
    "DEFAULT_TOLERANCE": "orthocli.scoring.checkpoint_scores",
    "ScoreOptions": "orthocli.scoring.checkpoint_scores",
    "combined_exit_code": "orthocli.scoring.checkpoint_scores",
    "score_checkpoint": "orthocli.scoring.checkpoint_scores",
    "StoredReport": "orthocli.scoring.stored_report",
    "draw_picture": "orthocli.scoring.pictures",
    "plan_pictures": "orthocli.scoring.pictures",
    "layer_picture": "orthocli.scoring.filter_similarity",
    "layer_pictures": "orthocli.scoring.filter_similarity",
    "need_matplotlib": "orthocli.scoring.plot",
    "plot_history": "orthocli.scoring.plot",
}
__all__ = [
    "CheckpointScores",
    "DEFAULT_TOLERANCE",
    "ScoreOptions",
    "StoredReport",
    "combined_exit_code",
    "draw_picture",
    "layer_picture",
    "layer_pictures",
    "need_matplotlib",
    "plan_pictures",
    "plot_history",
    "score_checkpoint",
]

if TYPE_CHECKING:
    from orthocli.scoring.checkpoint_scores import (
        DEFAULT_TOLERANCE,
        CheckpointScores,
        ScoreOptions,
        combined_exit_code,
        score_checkpoint,
    )
    from orthocli.scoring.filter_similarity import layer_picture, layer_pictures
    from orthocli.scoring.pictures import draw_picture, plan_pictures
    from orthocli.scoring.plot import need_matplotlib, plot_history
    from orthocli.scoring.stored_report import StoredReport

__getattr__, __dir__ = lazy_names(__name__, _WHERE, globals())
