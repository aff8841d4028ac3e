"""Which filters drop: counts, ties, scopes, min-keep, thresholds (orthocli.method.drops)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from orthocli.config import ReprConfig
from orthocli.errors import UsageError
from orthocli.method.drops import choose_drops

layer_sizes = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6)


def random_scores(sizes, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    if ties:  # few distinct values: many exact ties
        return [torch.randint(0, 3, (n,), generator=g).float() / 4 for n in sizes]
    return [torch.rand(n, generator=g) for n in sizes]


@settings(max_examples=60, deadline=None)
@given(
    sizes=layer_sizes,
    ratio=st.floats(0.01, 0.99),
    seed=st.integers(0, 10_000),
    ties=st.booleans(),
    min_keep=st.integers(1, 3),
)
def test_global_drops_the_highest_scores_by_count(sizes, ratio, seed, ties, min_keep):
    scores = random_scores(sizes, seed, ties)
    drops = choose_drops(scores, ReprConfig(ratio=ratio, scope="global", min_keep=min_keep))
    room = sum(max(0, n - min_keep) for n in sizes)
    assert sum(len(d) for d in drops) == min(max(1, math.floor(ratio * sum(sizes) + 1e-9)), room)
    for n, d in zip(sizes, drops):
        assert len(d) <= max(0, n - min_keep)
        assert d.tolist() == sorted(set(d.tolist()))
    # Nothing kept outranks something dropped, unless its layer had no room left.
    for n, d, s in zip(sizes, drops, scores):
        kept = [f for f in range(n) if f not in d.tolist()]
        if len(d) < max(0, n - min_keep):
            lowest_dropped = min((float(sc[dd]) for sc, ds in zip(scores, drops) for dd in ds), default=math.inf)
            assert all(float(s[f]) <= lowest_dropped for f in kept)


@settings(max_examples=60, deadline=None)
@given(sizes=layer_sizes, ratio=st.floats(0.01, 0.99), seed=st.integers(0, 10_000))
def test_layer_scope_drops_the_ratio_of_each_layer(sizes, ratio, seed):
    scores = random_scores(sizes, seed, ties=True)
    drops = choose_drops(scores, ReprConfig(ratio=ratio, scope="layer"))
    for n, d, s in zip(sizes, drops, scores):
        assert len(d) == min(max(1, math.floor(ratio * n + 1e-9)), n - 1)  # at least one where there is room
        kept = [f for f in range(n) if f not in d.tolist()]
        if len(d) and kept:
            assert min(float(s[f]) for f in d) >= max(float(s[f]) for f in kept)


def test_a_small_ratio_of_a_narrow_layer_drops_one_filter_not_none():
    scores = [torch.tensor([0.1, 0.4, 0.2, 0.3]), torch.tensor([0.5, 0.1]), torch.tensor([0.9])]
    drops = choose_drops(scores, ReprConfig(ratio=0.1, scope="layer"))
    assert [d.tolist() for d in drops] == [[1], [0], []]  # the most redundant of each; a 1-filter layer keeps it
    # global: one filter in all, the highest score with room (0.9 is a layer's only filter)
    assert [d.tolist() for d in choose_drops(scores, ReprConfig(ratio=0.1, scope="global"))] == [[], [0], []]


def test_ties_break_by_layer_then_filter_and_never_change_the_count():
    scores = [torch.full((4,), 0.5), torch.full((4,), 0.5)]
    drops = choose_drops(scores, ReprConfig(ratio=0.5, scope="global"))
    assert [d.tolist() for d in drops] == [[0, 1, 2], [0]]
    assert choose_drops(scores, ReprConfig(ratio=0.5, scope="global"))[0].tolist() == drops[0].tolist()  # deterministic
    assert [d.tolist() for d in choose_drops(scores, ReprConfig(ratio=0.5))] == [[0, 1], [0, 1]]  # default: per layer


def test_threshold_drops_scores_strictly_above_it():
    scores = [torch.tensor([0.1, 0.5, 0.9, 0.5])]
    assert choose_drops(scores, ReprConfig(ratio=None, threshold=0.5))[0].tolist() == [2]
    assert choose_drops(scores, ReprConfig(ratio=None, threshold=0.05))[0].tolist() == [
        1,
        2,
        3,
    ]  # min_keep=1 keeps the lowest


def test_min_keep_holds_against_global_ranking():
    scores = [torch.ones(10), torch.zeros(10)]
    drops = choose_drops(scores, ReprConfig(ratio=0.5, min_keep=3, scope="global"))
    assert len(drops[0]) == 7 and len(drops[1]) == 3


@pytest.mark.parametrize(
    "kwargs, text",
    [
        ({"ratio": 0.0}, "between 0 and 1"),
        ({"ratio": 1.0}, "between 0 and 1"),
        ({"ratio": 0.3, "scope": "network"}, "scope"),
        ({"ratio": 0.3, "min_keep": 0}, "min_keep"),
        ({"ratio": 0.3, "threshold": 0.2}, "give one"),
    ],
)
def test_bad_rules_are_refused(kwargs, text):
    with pytest.raises(UsageError, match=text):
        ReprConfig(**kwargs)
