"""Inter-filter orthogonality scores (the method's step 2, "score"; docs/method.md).

For a conv layer with J filters, each filter flattened to a row of W (J x k*k*c) and scaled to
unit length, P = |W_hat W_hat^T - I| and score[f] = sum_j P[f, j] / J. Higher means the filter
points where others already point: more redundant, dropped first.

The math is numpy's, one implementation for every caller: `orthocli score` hands it numpy arrays
read without torch; training, prune and the Python API hand it torch tensors, which are copied to
the CPU in float32 (float64 stays float64) and get torch tensors back, on the weight's device.
`filter_rows` and `dead_filters` only reshape and compare, so they return the kind they are given.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from orthocli.arrays import as_float, is_torch

# A filter whose every weight is zero has no direction. It contributes nothing, so it is the
# cheapest filter to drop; giving it 1.0 (a live filter scores at most (J-1)/J < 1) ranks it first.
DEAD_SCORE = 1.0


def chance_score(fan_in: int, group_size: int) -> float:
    """The expected score of a filter among `group_size` Gaussian random filters of `fan_in`
    weights: (J-1)/J times E|cos| of two random directions, Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)).
    A trained layer scoring above it is more redundant than chance."""
    if fan_in < 1 or group_size < 1:
        raise ValueError(f"fan_in and group_size must be >= 1, got {fan_in} and {group_size}")
    if fan_in == 1:
        return (group_size - 1) / group_size  # one dimension: every pair is parallel
    mean_abs_cos = math.exp(math.lgamma(fan_in / 2) - math.lgamma((fan_in + 1) / 2)) / math.sqrt(math.pi)
    return (group_size - 1) / group_size * mean_abs_cos


def filter_rows(weight: Any, *, groups: int = 1, transposed: bool = False) -> Any:
    """Return the filters as rows, grouped: shape (groups, J / groups, fan_in).

    A regular conv stores (out, in / groups, *kernel): filter f is weight[f]. A transposed conv
    stores (in, out / groups, *kernel): output channel f of group g is weight[g*in/G:(g+1)*in/G, f].
    Filters in different groups see different inputs, so they are only compared within a group.
    """
    if weight.ndim < 2:
        raise ValueError(f"a conv weight has at least 2 dimensions, got shape {tuple(weight.shape)}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    kernel = weight.shape[2:]
    if transposed:
        cin, out_per_group = weight.shape[0], weight.shape[1]
        if cin % groups:
            raise ValueError(f"{cin} input channels do not split into {groups} groups")
        w = weight.reshape(groups, cin // groups, out_per_group, *kernel).swapaxes(1, 2)
        return w.reshape(groups, out_per_group, -1)
    out = weight.shape[0]
    if out % groups:
        raise ValueError(f"{out} filters do not split into {groups} groups")
    return weight.reshape(groups, out // groups, -1)


def dead_filters(weight: Any, *, groups: int = 1, transposed: bool = False) -> Any:
    """Boolean mask (J,) of filters whose weights are all zero, in output-channel order."""
    rows = filter_rows(weight if is_torch(weight) else as_float(weight), groups=groups, transposed=transposed)
    return (rows == 0).all(-1).reshape(-1)


def orthogonality_scores(weight: Any, *, groups: int = 1, transposed: bool = False) -> Any:
    """Score every filter of one conv layer; returns (J,) in output-channel order, a numpy array for
    a numpy weight and a torch tensor for a torch one.

    Computed in float32 at least (float64 stays float64). Raises ValueError on NaN/Inf weights.
    """
    scores = _scores(filter_rows(as_float(weight), groups=groups, transposed=transposed))
    if is_torch(weight):
        import torch

        return torch.from_numpy(scores).to(weight.device)
    return scores


def _scores(rows: np.ndarray) -> np.ndarray:
    # One pass over the weights: the Gram matrix of the raw rows holds both the dot products and
    # the squared norms, so no normalised copy of the layer is ever made.
    with np.errstate(over="ignore", invalid="ignore"):
        gram = rows @ rows.swapaxes(1, 2)
    sq = np.diagonal(gram, axis1=1, axis2=2)
    dead = sq == 0
    if not np.isfinite(gram).all() or (dead.any() and (rows[dead] != 0).any()):
        return _scores_rescaled(rows)  # overflow, underflow, or NaN/Inf weights: the careful path
    norms = np.sqrt(np.where(dead, np.ones_like(sq), sq))
    cos = np.abs(gram / norms[:, :, None] / norms[:, None, :])
    return _finish(cos, dead)


def _scores_rescaled(rows: np.ndarray) -> np.ndarray:
    if not np.isfinite(rows).all():
        raise ValueError("weights contain NaN or Inf")
    # Scale each row by its largest |weight| first: the norm of tiny (1e-25) or huge (1e20) float32
    # weights would underflow to 0 or overflow to inf. Dead means all-zero, as in dead_filters().
    if rows.shape[-1]:
        peak = np.abs(rows).max(axis=-1, keepdims=True)
    else:
        peak = np.zeros((*rows.shape[:-1], 1), rows.dtype)
    dead = peak[..., 0] == 0
    rows = rows / np.where(dead[..., None], np.ones_like(peak), peak)
    norms = np.sqrt((rows * rows).sum(axis=-1, keepdims=True))
    unit = rows / np.where(dead[..., None], np.ones_like(norms), norms)
    return _finish(np.abs(unit @ unit.swapaxes(1, 2)), dead)


def _finish(cos: np.ndarray, dead: np.ndarray) -> np.ndarray:
    # |w.w - 1| on the diagonal is rounding noise for a live filter: it is exactly 0 by definition.
    j = cos.shape[-1]
    cos[:, np.arange(j), np.arange(j)] = 0
    cos = np.where(dead[:, :, None] | dead[:, None, :], np.zeros_like(cos), cos)
    scores = cos.sum(axis=-1) / j
    scores[dead] = DEAD_SCORE
    return scores.reshape(-1)
