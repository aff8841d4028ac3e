"""The matrix behind `score --plot`'s picture (`orthocli.scoring.filter_similarity`): |cos| between filters
ordered by score, so a layer's near-copies show as a block of near-1 entries; groups compared only
within themselves; dead filters and the diagonal blank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orthocli.method.orthogonality import chance_score, orthogonality_scores
from orthocli.method.orthogonality import filter_rows as torch_rows
from orthocli.scoring.filter_similarity import filter_rows, layer_picture


def picture(weight: torch.Tensor, groups: int = 1, transposed: bool = False):
    scores = orthogonality_scores(weight, groups=groups, transposed=transposed)
    per_group = (weight.shape[1] * groups if transposed else weight.shape[0]) // groups
    fan_in = weight[0].numel() if not transposed else weight.shape[0] // groups * weight[0, 0].numel()
    return layer_picture("conv", weight, scores, chance_score(fan_in, per_group), groups=groups, transposed=transposed)


def test_near_copies_gather_in_a_bright_block_at_the_top_left():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 8, 3, 3, generator=g)
    copies = [2, 5, 7, 10]
    for i in copies[1:]:
        w[i] = w[copies[0]] + 0.05 * torch.randn(8, 3, 3, generator=g)  # near-copies of filter 2
    p = picture(w)

    assert sorted(p.order[:4].tolist()) == copies  # the most redundant first
    block = p.cosine[:4, :4]
    off = block[~np.eye(4, dtype=bool)]
    assert off.min() > 0.95 and np.isnan(np.diag(block)).all()
    rest = p.cosine[4:, 4:][~np.eye(8, dtype=bool)]
    assert rest.max() < 0.7 and p.cosine[:4, 4:].max() < 0.7  # random filters of 72 weights: far from parallel
    assert list(p.scores) == sorted(p.scores, reverse=True)
    assert p.ratio > 1 and p.mean == pytest.approx(float(orthogonality_scores(w).mean()))


def test_the_matrix_is_the_cosine_of_the_filters_in_that_order():
    w = torch.randn(6, 4, 5, generator=torch.Generator().manual_seed(1))
    p = picture(w)
    rows = w.reshape(6, -1)[torch.as_tensor(p.order)].double()
    unit = rows / rows.norm(dim=1, keepdim=True)
    expected = (unit @ unit.T).abs().numpy()
    np.fill_diagonal(expected, np.nan)
    np.testing.assert_allclose(p.cosine, expected, rtol=1e-5, equal_nan=True)
    # each filter's score is its row's mean |cos| over all J entries (the diagonal counted as 0)
    np.testing.assert_allclose(np.nansum(p.cosine, axis=1) / 6, p.scores, rtol=1e-5)


def test_groups_are_compared_within_themselves_and_dead_filters_are_blank():
    w = torch.randn(8, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    w[5] = 0  # a dead filter in the second group
    p = picture(w, groups=2)
    assert sorted(p.order[:4].tolist()) == [0, 1, 2, 3] and sorted(p.order[4:].tolist()) == [4, 5, 6, 7]
    assert np.isnan(p.cosine[:4, 4:]).all() and np.isnan(p.cosine[4:, :4]).all()
    assert p.order[4] == 5  # dead filters score 1: first of their group
    assert np.isnan(p.cosine[4]).all() and np.isnan(p.cosine[:, 4]).all()
    assert not np.isnan(p.cosine[5, 6])


@pytest.mark.parametrize(("shape", "groups", "transposed"), [((8, 4, 3), 2, False), ((6, 3, 3, 3), 3, True)])
def test_the_rows_follow_the_layout_orthogonality_defines(shape, groups, transposed):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(3))
    ours = filter_rows(w, groups, transposed)
    np.testing.assert_allclose(ours, torch_rows(w, groups=groups, transposed=transposed).double().numpy())
    np.testing.assert_allclose(filter_rows(w.numpy(), groups, transposed), ours)  # an array works as a tensor does


def test_the_histogram_spans_the_chance_level():
    w = torch.linalg.qr(torch.randn(16, 8, generator=torch.Generator().manual_seed(4)))[0].T.reshape(8, 4, 2, 2)
    p = picture(w)  # orthogonal filters: every score near 0, far below chance
    counts, edges = p.histogram(bins=10)
    assert counts.sum() == 8 and edges[0] == 0 and edges[-1] >= p.chance > p.scores.max()
