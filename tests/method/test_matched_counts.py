"""Matched counts: a random-ranking control that drops, cycle by cycle, exactly as many filters per
layer as the method run did (`plan_drops(counts=...)`, `RePr(counts=...)`, `ReprCallback(counts=...)`),
other filters, the same ones again from the same seed."""

from __future__ import annotations

import pytest
import torch
from train_helpers import make_data, make_model, make_optimizer, run_epoch

from orthocli import RePr, ReprConfig
from orthocli.errors import UsageError
from orthocli.method.drops import choose_drops, plan_drops
from orthocli.network.layers import convs_from_module

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULE = dict(s1=1, s2=1, cycles=3)


def run(config: ReprConfig, counts=None) -> tuple[RePr, list[dict[str, list[int]]]]:
    """A controller driven for every cycle; the filters it dropped in each."""
    model, data = make_model(), make_data()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, config, counts=counts)
    dropped = []
    for _ in range(config.cycles * config.period + 1):
        run_epoch(model, optimizer, data)
        if ctrl.record is not None:
            dropped.append({name: layer["dropped"].tolist() for name, layer in ctrl.record["layers"].items()})
        ctrl.epoch_end()
    return ctrl, dropped


def test_choose_drops_takes_counts_instead_of_the_rule():
    scores = [torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3]), torch.tensor([0.2, 0.4, 0.6])]
    rule = ReprConfig(ratio=0.2)
    assert [len(d) for d in choose_drops(scores, rule)] == [1, 1]
    assert choose_drops(scores, rule, counts=[3, 0])[0].tolist() == [1, 2, 3]  # the ranking's first three
    assert choose_drops(scores, rule, counts=[3, 0])[1].tolist() == []
    with pytest.raises(ValueError, match="counts has 1 entries for 2 layers"):
        choose_drops(scores, rule, counts=[1])


def test_plan_drops_with_counts_drops_exactly_them_and_refuses_what_cannot_be():
    model = make_model()
    layers = convs_from_module(model)
    config = ReprConfig(ranking="random")  # the adaptive rule: a fresh model is at chance, it alone drops nothing
    plan = plan_drops(layers, config, counts={"features.conv2": 3}, seed=5)
    assert {n: len(d) for n, d in plan.drops.items()} == {"features.conv2": 3}
    assert plan_drops(layers, config, counts={}).drops == {}  # zero is a count, not an error
    with pytest.raises(UsageError, match="matched counts name features.conv1, which may not lose filters here"):
        plan_drops(layers, config, counts={"features.conv1": 1})  # the first layer is skipped
    with pytest.raises(UsageError, match="matched count 8 for features.conv2: it may lose 0 to 7 of its 8"):
        plan_drops(layers, config, counts={"features.conv2": 8})


def test_a_matched_random_run_drops_the_method_counts_per_cycle_other_filters_repeatably():
    method, method_drops = run(ReprConfig(**SCHEDULE, ratio=0.25, seed=2))
    counts = method.counts
    assert sorted(counts) == [1, 2, 3] and all(sum(c.values()) == 4 for c in counts.values())

    control, control_drops = run(ReprConfig(**SCHEDULE, ranking="random", seed=2), counts=counts)
    assert control.counts == counts
    assert [{n: len(d) for n, d in c.items()} for c in control_drops] == [counts[c] for c in (1, 2, 3)]
    assert control_drops != method_drops  # other filters
    again, again_drops = run(ReprConfig(**SCHEDULE, ranking="random", seed=2), counts=counts)
    assert again_drops == control_drops  # from its seed: (seed, cycle), no generator state
    other, other_drops = run(ReprConfig(**SCHEDULE, ranking="random", seed=3), counts=counts)
    assert other_drops != control_drops and other.counts == counts


def test_counts_for_a_layer_the_run_cannot_drop_from_are_refused_before_training():
    model = make_model()
    with pytest.raises(UsageError, match="matched counts name features.conv9"):
        RePr(model, make_optimizer(model), ReprConfig(**SCHEDULE), counts={2: {"features.conv9": 1}})


def test_a_cycle_the_counts_leave_out_drops_nothing():
    _, dropped = run(ReprConfig(**SCHEDULE, ranking="random"), counts={2: {"features.conv3": 2}})
    assert [{n: len(d) for n, d in c.items()} for c in dropped] == [{"features.conv3": 2}]


def test_the_public_plan_drops_takes_counts():
    import orthocli

    plan = orthocli.plan_drops(make_model(), ranking="random", counts={"features.conv3": 3})
    assert {n: len(d) for n, d in plan.drops.items()} == {"features.conv3": 3}
    ranked = orthocli.plan_drops(make_model(), counts={"features.conv3": 3})  # the method's ranking, 3 filters
    assert len(ranked.drops["features.conv3"]) == 3
