"""orthogonality_scores against a slow float64 reference, its invariances, and its edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from orthocli.method.orthogonality import DEAD_SCORE, dead_filters, orthogonality_scores

TOL = 1e-5


# --- an independent reference: one filter at a time, float64, numpy -------------------------


def reference_filters(weight: torch.Tensor, groups: int, transposed: bool) -> list[np.ndarray]:
    """Filter f as a flat vector, in output-channel order, read off PyTorch's documented layouts:
    Conv: (out, in/groups, *k), filter f = w[f].
    ConvTranspose: (in, out/groups, *k); output channel f = g*(out/groups) + o reads input
    channels g*(in/groups) .. (g+1)*(in/groups) through w[those, o]."""
    w = weight.detach().to(torch.float64).numpy()
    if not transposed:
        return [w[f].ravel() for f in range(w.shape[0])]
    in_per_group, out_per_group = w.shape[0] // groups, w.shape[1]
    return [
        w[g * in_per_group : (g + 1) * in_per_group, o].ravel() for g in range(groups) for o in range(out_per_group)
    ]


def reference_scores(weight: torch.Tensor, groups: int = 1, transposed: bool = False) -> np.ndarray:
    filters = reference_filters(weight, groups, transposed)
    J = len(filters)
    per_group = J // groups
    out = np.zeros(J)
    for f in range(J):
        a = filters[f]
        if not np.any(a):
            out[f] = DEAD_SCORE
            continue
        g = f // per_group
        total = 0.0
        for j in range(g * per_group, (g + 1) * per_group):
            b = filters[j]
            if j == f or not np.any(b):  # a dead filter has no direction: it overlaps nothing
                continue
            total += abs(float(a @ b)) / (np.linalg.norm(a) * np.linalg.norm(b))
        out[f] = total / per_group
    return out


# --- random layers ------------------------------------------------------------------------------


@st.composite
def conv_layers(draw, *, allow_dead: bool = True):
    """A random conv weight with its groups and layout (Conv1d/2d/3d, transposed or not)."""
    rank = draw(st.integers(1, 3))
    kernel = tuple(draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank)))
    groups = draw(st.integers(1, 3))
    out_per_group = draw(st.integers(1, 5))
    in_per_group = draw(st.integers(1, 4))
    transposed = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    if transposed:
        shape = (in_per_group * groups, out_per_group, *kernel)
    else:
        shape = (out_per_group * groups, in_per_group, *kernel)
    weight = torch.randn(shape, generator=gen)
    if allow_dead and draw(st.booleans()):
        f = draw(st.integers(0, out_per_group * groups - 1))
        _filter_view_zero(weight, f, groups, transposed)
    return weight, groups, transposed


def _filter_view_zero(weight: torch.Tensor, f: int, groups: int, transposed: bool) -> None:
    if transposed:
        in_per_group, out_per_group = weight.shape[0] // groups, weight.shape[1]
        g, o = divmod(f, out_per_group)
        weight[g * in_per_group : (g + 1) * in_per_group, o] = 0
    else:
        weight[f] = 0


def _scale_filter(weight: torch.Tensor, f: int, c: float, groups: int, transposed: bool) -> torch.Tensor:
    w = weight.clone()
    if transposed:
        in_per_group, out_per_group = w.shape[0] // groups, w.shape[1]
        g, o = divmod(f, out_per_group)
        w[g * in_per_group : (g + 1) * in_per_group, o] *= c
    else:
        w[f] *= c
    return w


@settings(max_examples=150, deadline=None)
@given(conv_layers())
def test_matches_reference(layer):
    weight, groups, transposed = layer
    got = orthogonality_scores(weight, groups=groups, transposed=transposed)
    want = reference_scores(weight, groups, transposed)
    assert got.shape == (len(want),)
    np.testing.assert_allclose(got.double().numpy(), want, atol=TOL, rtol=0)


@settings(max_examples=60, deadline=None)
@given(conv_layers())
def test_float64_and_float16_inputs(layer):
    weight, groups, transposed = layer
    w16 = weight.half()
    want = reference_scores(w16, groups, transposed)  # the half values, exactly, in float64
    got64 = orthogonality_scores(w16.double(), groups=groups, transposed=transposed)
    assert got64.dtype == torch.float64
    np.testing.assert_allclose(got64.numpy(), want, atol=1e-10, rtol=0)
    got16 = orthogonality_scores(w16, groups=groups, transposed=transposed)
    assert got16.dtype == torch.float32  # computed in float32 at least
    np.testing.assert_allclose(got16.double().numpy(), want, atol=TOL, rtol=0)


@settings(max_examples=80, deadline=None)
@given(conv_layers())
def test_scores_bounded(layer):
    weight, groups, transposed = layer
    scores = orthogonality_scores(weight, groups=groups, transposed=transposed)
    dead = dead_filters(weight, groups=groups, transposed=transposed)
    per_group = scores.numel() // groups
    live = scores[~dead]
    assert (live >= 0).all()
    assert (live <= (per_group - 1) / per_group + TOL).all()  # below DEAD_SCORE: dead ranks first
    assert (scores[dead] == DEAD_SCORE).all()


# --- invariances ------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    conv_layers(),
    st.data(),
    st.sampled_from([3.0, 0.01, -1.0, -250.0, 1e-25, 1e20, -1e-30]),
)
def test_scaling_a_filter_changes_nothing(layer, data, c):
    weight, groups, transposed = layer
    J = orthogonality_scores(weight, groups=groups, transposed=transposed).numel()
    f = data.draw(st.integers(0, J - 1))
    before = orthogonality_scores(weight, groups=groups, transposed=transposed)
    after = orthogonality_scores(_scale_filter(weight, f, c, groups, transposed), groups=groups, transposed=transposed)
    torch.testing.assert_close(after, before, atol=TOL, rtol=0)
    assert torch.equal(
        dead_filters(weight, groups=groups, transposed=transposed),
        dead_filters(_scale_filter(weight, f, c, groups, transposed), groups=groups, transposed=transposed),
    )


@settings(max_examples=60, deadline=None)
@given(conv_layers(), st.randoms(use_true_random=False))
def test_permuting_filters_permutes_scores(layer, rnd):
    weight, _, transposed = layer  # groups=1: any permutation of the filters is a valid layer
    J = weight.shape[1] if transposed else weight.shape[0]
    perm = list(range(J))
    rnd.shuffle(perm)
    perm_t = torch.tensor(perm, dtype=torch.long)
    permuted = weight[:, perm_t] if transposed else weight[perm_t]
    before = orthogonality_scores(weight, transposed=transposed)
    after = orthogonality_scores(permuted, transposed=transposed)
    torch.testing.assert_close(after, before[perm_t], atol=TOL, rtol=0)


@settings(max_examples=60, deadline=None)
@given(conv_layers(), st.integers(0, 2**31 - 1))
def test_groups_do_not_affect_each_other(layer, seed):
    weight, groups, transposed = layer
    assume(groups > 1)
    J = orthogonality_scores(weight, groups=groups, transposed=transposed).numel()
    per_group = J // groups
    # Redraw every filter outside group 0: the scores of group 0 must not move.
    other = weight.clone()
    noise = torch.randn(weight.shape, generator=torch.Generator().manual_seed(seed))
    if transposed:
        in_per_group = weight.shape[0] // groups
        other[in_per_group:] = noise[in_per_group:]
    else:
        other[per_group:] = noise[per_group:]
    a = orthogonality_scores(weight, groups=groups, transposed=transposed)[:per_group]
    b = orthogonality_scores(other, groups=groups, transposed=transposed)[:per_group]
    torch.testing.assert_close(a, b, atol=TOL, rtol=0)


# --- edge cases -------------------------------------------------------------------------------


def test_all_zero_filter_is_dead_and_ignored_by_the_others():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(5, 4, 3, 3, generator=gen)
    w[2] = 0
    scores = orthogonality_scores(w)
    assert scores[2].item() == DEAD_SCORE
    assert dead_filters(w).tolist() == [False, False, True, False, False]
    np.testing.assert_allclose(scores.double().numpy(), reference_scores(w), atol=TOL, rtol=0)
    # A live filter's overlap counts only live filters, but is still divided by all J.
    live = w[[0, 1, 3, 4]]
    np.testing.assert_allclose(
        scores[[0, 1, 3, 4]].double().numpy(), orthogonality_scores(live).double().numpy() * 4 / 5, atol=TOL
    )


def test_all_filters_dead():
    w = torch.zeros(3, 2, 3)
    assert orthogonality_scores(w).tolist() == [DEAD_SCORE] * 3
    assert dead_filters(w).all()


def test_tiny_weights_are_not_dead():
    # 1e-25 squared underflows float32: the filter must still have a direction.
    w = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]).reshape(3, 2, 1) * 1e-25
    assert not dead_filters(w).any()
    c = 1 / math.sqrt(2)
    np.testing.assert_allclose(orthogonality_scores(w).double().numpy(), [c / 3, 2 * c / 3, c / 3], atol=TOL)


@pytest.mark.parametrize("shape", [(1, 3, 5), (1, 4, 3, 3), (1, 2, 3, 1, 2)])
def test_one_filter_scores_zero(shape):
    w = torch.randn(shape)
    assert orthogonality_scores(w).tolist() == [0.0]


@pytest.mark.parametrize("J,in_ch,kernel", [(32, 3, (3, 3)), (8, 1, (3,)), (20, 2, (2, 2, 1))])
def test_more_filters_than_dimensions_cannot_all_be_orthogonal(J, in_ch, kernel):
    d = in_ch * math.prod(kernel)
    assert d < J
    # Welch: for J unit vectors in d dims, sum_{f != j} cos^2 >= J^2/d - J, and |cos| >= cos^2, so
    # the mean score (1/J^2) sum_{f != j} |cos| >= 1/d - 1/J. Check random and best-spread frames.
    bound = 1 / d - 1 / J
    random_w = torch.randn(J, in_ch, *kernel, generator=torch.Generator().manual_seed(0))
    q, _ = torch.linalg.qr(torch.randn(J, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    tight_w = q.reshape(J, in_ch, *kernel)  # orthonormal columns: a tight frame, as spread as possible
    for w in (random_w, tight_w):
        scores = orthogonality_scores(w)
        assert scores.mean().item() >= bound - 1e-6
        assert scores.mean().item() > 0


@pytest.mark.parametrize("J,in_ch,kernel", [(4, 2, (2,)), (9, 1, (3, 3)), (6, 3, (1, 2, 2)), (27, 3, (3, 3))])
def test_orthogonal_filters_score_zero(J, in_ch, kernel):
    d = in_ch * math.prod(kernel)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(J)))
    rows = q.T[:J] * torch.linspace(0.5, 3.0, J).unsqueeze(1)  # orthogonal, different lengths
    scores = orthogonality_scores(rows.reshape(J, in_ch, *kernel))
    torch.testing.assert_close(scores, torch.zeros(J), atol=TOL, rtol=0)


@pytest.mark.parametrize("J", [2, 3, 7])
def test_identical_filters_score_j_minus_one_over_j(J):
    base = torch.randn(1, 3, 2, 2)
    signs = torch.tensor([1.0, -1.0] * J)[:J].reshape(J, 1, 1, 1)
    scales = torch.arange(1, J + 1, dtype=torch.float32).reshape(J, 1, 1, 1)
    w = base * signs * scales  # the same direction up to sign and length
    torch.testing.assert_close(orthogonality_scores(w), torch.full((J,), (J - 1) / J), atol=TOL, rtol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_raise(bad):
    w = torch.randn(4, 2, 3, 3)
    w[1, 0, 2, 2] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        orthogonality_scores(w)


def test_grouped_conv_compares_filters_within_groups_only():
    # Depthwise-like: 4 filters, 2 groups of 2; filters 0 and 2 are equal vectors but see
    # different inputs, and each is orthogonal to its group partner.
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]).reshape(4, 2, 1, 1)
    torch.testing.assert_close(orthogonality_scores(w, groups=2), torch.zeros(4))
    # Read as one group, the same tensor has two identical pairs.
    torch.testing.assert_close(orthogonality_scores(w, groups=1), torch.full((4,), 0.25))
    # Behaviour check of the grouping: filter 2's output does not depend on group 0's inputs.
    conv = torch.nn.Conv2d(4, 4, 1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(w)
    x = torch.randn(1, 4, 2, 2)
    x2 = x.clone()
    x2[:, :2] = torch.randn(1, 2, 2, 2)
    assert torch.equal(conv(x)[:, 2:], conv(x2)[:, 2:])


def test_transposed_layout_matches_what_the_conv_computes():
    # ConvTranspose2d(4 -> 6, groups=2): weight (4, 3, 3, 3). Make output channels 0 and 1 (group 0)
    # the same filter and leave channel 2 all zero; group 1 gets orthogonal filters.
    conv = torch.nn.ConvTranspose2d(4, 6, 3, groups=2, bias=False)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        conv.weight.zero_()
        f = torch.randn(2, 3, 3, generator=gen)
        conv.weight[0:2, 0] = f
        conv.weight[0:2, 1] = -2 * f
        basis = torch.eye(18).reshape(18, 2, 3, 3)
        for o in range(3):
            conv.weight[2:4, o] = basis[o]
    y = conv(torch.randn(1, 4, 5, 5, generator=gen))
    # What the layout claims, checked against the conv itself:
    torch.testing.assert_close(y[:, 1], -2 * y[:, 0])
    assert torch.count_nonzero(y[:, 2]) == 0
    scores = orthogonality_scores(conv.weight.detach(), groups=2, transposed=True)
    torch.testing.assert_close(scores, torch.tensor([1 / 3, 1 / 3, DEAD_SCORE, 0.0, 0.0, 0.0]), atol=TOL, rtol=0)
    assert dead_filters(conv.weight, groups=2, transposed=True).tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize("transposed", [False, True])
def test_groups_must_divide_channels(transposed):
    with pytest.raises(ValueError, match="groups"):
        orthogonality_scores(torch.randn(5, 3, 3), groups=2, transposed=transposed)
