"""Re-initialisation math: rank-revealing null space, orthogonality, fallbacks, re-introduction."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from orthocli.method.nullspace import filter_scale, new_filters, null_space_basis, row_space_basis
from orthocli.method.subnet import apply_drops, make_record, reintroduce
from orthocli.network.banks import banks_from_layers
from orthocli.network.layers import ConvLayer


def cosines(a, b):
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    return (a @ b.T).abs()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20), d=st.integers(2, 30), dup=st.integers(0, 5), seed=st.integers(0, 1000))
def test_null_space_is_orthonormal_and_complementary(n, d, dup, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(n, d, generator=g, dtype=torch.float64)
    rows = torch.cat([rows, rows[:1].repeat(dup, 1) * 2.0])  # dependent rows must not eat room
    rank = torch.linalg.matrix_rank(rows).item()
    basis = null_space_basis(rows)
    assert basis.shape == (d, d - rank)
    assert torch.allclose(basis.T @ basis, torch.eye(d - rank, dtype=torch.float64), atol=1e-10)
    assert (rows @ basis).abs().max().item() < 1e-9 if basis.numel() else True
    assert row_space_basis(rows).shape == (d, rank)


@settings(max_examples=40, deadline=None)
@given(kept=st.integers(1, 12), k=st.integers(1, 6), d=st.integers(3, 40), seed=st.integers(0, 1000))
def test_new_filters_are_orthogonal_where_the_layer_has_room(kept, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    kept_rows = torch.randn(kept, d, generator=g, dtype=torch.float64)
    old = torch.randn(k, d, generator=g, dtype=torch.float64)
    made = new_filters(kept_rows, old, scale=2.5, generator=torch.Generator().manual_seed(seed))
    assert made.rows.shape == (k, d)
    assert made.null_space + made.kept_only + made.random == k
    room_both = max(0, d - min(kept + k, d))
    assert made.null_space == min(k, room_both)
    assert torch.allclose(made.rows.norm(dim=1), torch.full((k,), 2.5, dtype=torch.float64))
    ns = made.rows[: made.null_space]
    if len(ns):
        assert cosines(ns, kept_rows).max() < 1e-6
        assert cosines(ns, old).max() < 1e-6
        assert cosines(ns, ns).fill_diagonal_(0).max() < 1e-6  # mutually orthogonal too
    ko = made.rows[made.null_space : made.null_space + made.kept_only]
    if len(ko):
        assert cosines(ko, kept_rows).max() < 1e-6


def test_first_layer_without_room_falls_back_to_random_and_says_so():
    g = torch.Generator().manual_seed(0)
    kept, old = torch.randn(28, 27, generator=g), torch.randn(4, 27, generator=g)
    made = new_filters(kept, old, scale=1.0, generator=g)
    assert (made.null_space, made.kept_only, made.random) == (0, 0, 4)
    assert torch.isfinite(made.rows).all()


def test_filter_scale_is_the_mean_kept_norm():
    kept = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    assert filter_scale(kept, torch.ones(1, 2)) == pytest.approx(3.0)
    assert filter_scale(torch.zeros(2, 2), torch.tensor([[0.0, 2.0]])) == pytest.approx(2.0)


@pytest.mark.parametrize("groups, transposed", [(1, False), (2, False), (1, True)])
def test_reintroduce_keeps_kept_filters_bit_identical_and_orthogonal(groups, transposed):
    torch.manual_seed(0)
    conv = torch.nn.ConvTranspose2d(8, 12, 3) if transposed else torch.nn.Conv2d(8, 12, 3, groups=groups)
    sd = {"c.weight": conv.weight.detach().clone(), "c.bias": conv.bias.detach().clone()}
    layer = ConvLayer("c", "c.weight", sd["c.weight"], groups, transposed, True)
    drops = {"c": torch.tensor([1, 7, 8])}
    record = make_record(sd, banks_from_layers([layer], sd), drops, {})
    before = sd["c.weight"].clone()
    apply_drops(sd, record)
    dim = 1 if transposed else 0
    assert sd["c.weight"].index_select(dim, drops["c"]).abs().sum() == 0 and sd["c.bias"][drops["c"]].abs().sum() == 0
    report = reintroduce(sd, record, torch.Generator().manual_seed(1), 1.0, "keep")
    assert report["c"]["dropped"] == 3 and report["c"]["null_space"] == 3
    w = sd["c.weight"]
    kept = [f for f in range(12) if f not in (1, 7, 8)]
    idx = torch.tensor(kept)
    assert torch.equal(w.index_select(dim, idx), before.index_select(dim, idx))
    assert sd["c.bias"][drops["c"]].abs().sum() == 0
    from orthocli.method.orthogonality import filter_rows

    rows, old_rows = (
        filter_rows(w, groups=groups, transposed=transposed).reshape(12, -1),
        filter_rows(before, groups=groups, transposed=transposed).reshape(12, -1),
    )
    per_group = 12 // groups
    for f in (1, 7, 8):
        same_group = [j for j in kept if j // per_group == f // per_group]
        assert cosines(rows[f : f + 1], rows[same_group]).max() < 1e-6
        assert cosines(rows[f : f + 1], old_rows[f : f + 1]).max() < 1e-6


def test_reintroduce_is_seeded():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    outs = []
    for seed in (5, 5, 6):
        sd = {"c.weight": w.clone()}
        layer = ConvLayer("c", "c.weight", sd["c.weight"])
        record = make_record(sd, banks_from_layers([layer], sd), {"c": torch.tensor([0, 3])}, {})
        apply_drops(sd, record)
        reintroduce(sd, record, torch.Generator().manual_seed(seed), 1.0, "keep")
        outs.append(sd["c.weight"])
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
