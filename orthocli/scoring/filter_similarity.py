"""The picture of a layer's redundancy as numbers (what `orthocli score --plot` draws): the |cosine|
matrix between its filters, ordered by score with the most redundant first, so near-copies gather
in a bright block at the top left (the paper's figure on filter correlation), and the scores with
the level of random filters of the layer's shape. Pure numpy; drawing is plot.py's alone.

Filters are compared within their group only (a grouped conv's filters see different inputs): the
entries between two groups are NaN, as are the diagonal (a filter against itself says nothing) and
a dead (all-zero) filter's row and column (it has no direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LayerPicture:
    name: str
    order: np.ndarray  # (J,) filter indices (output channels), most redundant first within each group
    cosine: np.ndarray  # (J, J) |cos| between the filters in that order (float32; NaN: see the module doc)
    scores: np.ndarray  # (J,) their orthogonality scores, in that order
    chance: float  # the mean score random filters of this shape would have
    groups: int

    @property
    def mean(self) -> float:
        return float(self.scores.mean())

    @property
    def ratio(self) -> float | None:
        """mean / chance: above 1 more redundant than random filters."""
        return self.mean / self.chance if self.chance > 0 else None

    def histogram(self, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of the scores over [0, the larger of the top score and chance] (plus 5%),
        so the chance level always falls inside the range drawn."""
        top = max(float(self.scores.max()) if len(self.scores) else 0.0, self.chance) * 1.05 or 1.0
        return np.histogram(self.scores, bins=bins, range=(0.0, top))


def filter_rows(weight: Any, groups: int = 1, transposed: bool = False) -> np.ndarray:
    """(groups, J / groups, fan_in) float64: the layout `orthogonality.filter_rows` defines (a
    regular conv's filter f is weight[f]; a transposed conv's output channel f of group g is
    weight[g*in/G:(g+1)*in/G, f]), on a numpy copy of the weight (torch tensor or array)."""
    w = _numpy(weight)
    kernel = w.shape[2:]
    if transposed:
        cin, per_group = w.shape[0], w.shape[1]
        w = w.reshape(groups, cin // groups, per_group, *kernel).swapaxes(1, 2)
        return w.reshape(groups, per_group, -1)
    return w.reshape(groups, w.shape[0] // groups, -1)


def layer_picture(
    name: str, weight: Any, scores: Any, chance: float, *, groups: int = 1, transposed: bool = False
) -> LayerPicture:
    """The picture of one conv layer from its weight and its orthogonality scores (output-channel order)."""
    rows = filter_rows(weight, groups, transposed)
    scores = _numpy(scores).reshape(-1)
    per_group = rows.shape[1]
    order = np.concatenate(
        [g * per_group + np.argsort(-scores[g * per_group : (g + 1) * per_group], kind="stable") for g in range(groups)]
    ).astype(np.int64)
    j = len(scores)
    cosine = np.full((j, j), np.nan, dtype=np.float32)
    for g in range(groups):
        idx = order[g * per_group : (g + 1) * per_group] - g * per_group  # this group's filters, in order
        r = rows[g][idx]
        norms = np.linalg.norm(r, axis=1)
        live = norms > 0
        unit = np.where(live[:, None], r / np.where(live, norms, 1.0)[:, None], np.nan)
        block = np.abs(unit @ unit.T)
        np.fill_diagonal(block, np.nan)
        cosine[g * per_group : (g + 1) * per_group, g * per_group : (g + 1) * per_group] = block
    return LayerPicture(name, order, cosine, scores[order], float(chance), groups)


def layer_pictures(layers: Any) -> list[LayerPicture]:
    """The pictures of scored layers (`layer_scores.LayerScores`, as `score` reports them)."""
    return [
        layer_picture(
            s.layer.name, s.layer.weight, s.scores, s.chance, groups=s.layer.groups, transposed=s.layer.transposed
        )
        for s in layers
    ]


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor (any dtype, any device): no torch import needed here
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)
