"""Which filters a cycle drops (`orthocli.method.ranking`): the method's ranking, a seeded random one and
the least redundant first, each dropping exactly as many filters per layer as the drop rule says."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from train_helpers import make_model, near_copies, orthogonal

from orthocli import plan_drops
from orthocli.config import RANKINGS, ReprConfig
from orthocli.errors import UsageError
from orthocli.method.drops import choose_drops, drop_counts
from orthocli.method.ranking import BY_NAME


def test_every_ranking_the_options_name_exists():
    assert tuple(BY_NAME) == RANKINGS


@given(
    sizes=st.lists(st.integers(2, 12), min_size=1, max_size=4),
    ratio=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**31),
    ranking=st.sampled_from(RANKINGS),
)
def test_a_ranking_changes_which_filters_never_how_many(sizes, ratio, seed, ranking):
    g = torch.Generator().manual_seed(seed)
    scores = [torch.rand(n, generator=g) for n in sizes]
    config = ReprConfig(ratio=ratio, ranking=ranking)
    # what the criteria read besides the scores, under the names layers without a ConvLayer get
    bn = {f"layer {i}": torch.rand(n, generator=g) for i, n in enumerate(sizes)}
    stats = {
        f"layer {i}": {"taylor": torch.rand(n, generator=g), "activation": torch.rand(n, generator=g)}
        for i, n in enumerate(sizes)
    }
    drops = choose_drops(scores, config, seed=seed, bn_scales=bn, stats=stats)
    assert [len(d) for d in drops] == drop_counts(scores, config)
    for d, n in zip(drops, sizes):
        assert d.dtype == torch.long and d.tolist() == sorted(set(d.tolist())) and all(0 <= i < n for i in d.tolist())


def test_the_method_drops_the_most_redundant_and_least_the_least():
    scores = [torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])]
    assert choose_drops(scores, ReprConfig(ratio=0.4))[0].tolist() == [1, 3]
    assert choose_drops(scores, ReprConfig(ratio=0.4, ranking="least"))[0].tolist() == [0, 4]


def test_random_choices_repeat_from_their_seed_and_differ_between_seeds():
    scores = [torch.linspace(0, 1, 32), torch.linspace(0, 1, 16)]
    config = ReprConfig(ratio=0.25, ranking="random")
    picks = [tuple(tuple(d.tolist()) for d in choose_drops(scores, config, seed=s)) for s in range(6)]
    assert picks[0] == tuple(tuple(d.tolist()) for d in choose_drops(scores, config, seed=0))
    assert len(set(picks)) > 1
    assert picks[0][0] != picks[0][1][: len(picks[0][0])]  # each layer draws its own


def test_the_least_redundant_ranking_keeps_the_near_copies_on_a_real_layer():
    model = make_model()
    w = model.features.conv2.weight.data
    near_copies(w[:4])  # filters 0-3 nearly one filter: the most redundant
    orthogonal(w[4:])  # 4-7 at right angles to each other
    options = dict(ratio=0.375, layers=["features.conv2"])
    assert set(plan_drops(model, **options).drops["features.conv2"].tolist()) <= {0, 1, 2, 3}
    least = plan_drops(model, **options, ranking="least").drops["features.conv2"].tolist()
    assert len(least) == 3 and set(least) <= {4, 5, 6, 7}


def test_an_unknown_ranking_is_an_option_error():
    with pytest.raises(
        UsageError,
        match="ranking must be one of orthogonality, random, least, l1, bn-scale, taylor, activation, got 'norm'",
    ):
        ReprConfig(ranking="norm")
