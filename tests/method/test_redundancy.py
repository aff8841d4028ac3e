"""Is there anything to remove? `orthocli.method.redundancy`: each candidate layer's mean score against
random filters of its shape, and what the default rule would drop from it."""

from __future__ import annotations

import math

import pytest
import torch
from train_helpers import make_model, near_copies, orthogonal

from orthocli.config import ReprConfig
from orthocli.method.orthogonality import chance_score, orthogonality_scores
from orthocli.method.redundancy import assess, live_means, watched_layers
from orthocli.network.layers import convs_from_module


def shaped(shape) -> torch.nn.Module:
    model = make_model()
    for conv in (model.features.conv2, model.features.conv3):
        shape(conv.weight.data)
    return model


def test_near_copies_are_above_chance_and_the_rule_would_drop_from_them():
    report = assess(shaped(near_copies), ReprConfig())
    assert [layer.name for layer in report.layers] == ["features.conv2", "features.conv3"]  # conv1: skip_first
    for layer in report.layers:
        assert layer.chance == pytest.approx(chance_score(8 * 9, 8))
        assert layer.above_chance and layer.ratio > 3 and layer.drops == math.floor(8 * 0.3)  # at the cap
    assert not report.nothing_to_drop
    doc = report.to_dict()
    assert doc["nothing_to_drop"] is False and doc["layers"][0]["ratio"] == pytest.approx(report.layers[0].ratio)


def test_orthogonal_filters_leave_the_default_rule_nothing_to_drop_and_a_ratio_drops_anyway():
    report = assess(shaped(orthogonal), ReprConfig())
    assert all(layer.mean < 1e-6 and layer.drops == 0 for layer in report.layers)
    assert report.nothing_to_drop
    ratio = assess(shaped(orthogonal), ReprConfig(ratio=0.25))
    assert not ratio.nothing_to_drop and all(layer.drops is None for layer in ratio.layers)


def test_min_keep_bounds_what_the_rule_would_drop():
    report = assess(shaped(near_copies), ReprConfig(min_keep=7))
    assert [layer.drops for layer in report.layers] == [1, 1]


def test_live_means_leave_dropped_filters_out():
    model = make_model()
    w = model.features.conv2.weight.data
    w[:2] = 0  # two dropped filters (a dead filter scores 1)
    means = live_means(watched_layers(model, ReprConfig()))
    scores = orthogonality_scores(w)
    assert means["features.conv2"] == pytest.approx(float(scores[2:].mean()), abs=1e-6)
    assert set(means) == {"features.conv2", "features.conv3"}


def test_the_same_layers_at_another_moment():
    report = assess(shaped(near_copies), ReprConfig())
    chance = report.layers[0].chance
    later = report.with_means({"features.conv2": chance * 0.9, "features.conv3": chance * 1.5}, ReprConfig())
    assert [layer.drops for layer in later.layers] == [0, math.floor(8 * (1 - 1 / 1.5))]
    assert [layer.chance for layer in later.layers] == [layer.chance for layer in report.layers]


def test_watched_layers_follow_the_layer_options():
    model = make_model()
    assert [c.name for c in watched_layers(model, ReprConfig(exclude=["*conv3"]))] == ["features.conv2"]
    names = [c.name for c in watched_layers(model, ReprConfig(skip_first=False))]
    assert names == [c.name for c in convs_from_module(model)]


@pytest.mark.usefixtures("one_thread")
def test_the_training_history_records_each_candidate_layers_mean_every_epoch(digits, monkeypatch):
    """What `train --plot` draws and the first-drop statement reads: at the end of the last standard
    epoch, the mean the drop then scores; in the sub-network, the kept filters' mean; every arm."""
    from train_helpers import FAST, convnet

    import orthocli.method.drops as drops
    from orthocli.config import TrainConfig
    from orthocli.training.loop import train

    planned = []
    real = drops.plan_drops

    def spy(layers, config, **kw):
        plan = real(layers, config, **kw)
        if kw.get("seed"):  # a cycle's choice (the controller's construction check passes no seed)
            planned.append({c.layer.name: c.mean for c in plan.candidates})
        return plan

    monkeypatch.setattr("orthocli.method.controller.plan_drops", spy)
    cfg = TrainConfig(**FAST, max_epochs=3, ratio=0.25)
    history = train(convnet(digits), digits, cfg).history
    assert [set(e["layer_means"]) for e in history] == [{"features.conv2", "features.conv3"}] * 3
    assert history[0]["layer_means"] == pytest.approx(planned[0], abs=1e-6)  # epoch S1: what cycle 1 drops by
    control = train(convnet(digits), digits, TrainConfig(**FAST, max_epochs=3, ratio=0.25, baseline=True)).history
    assert control[0]["layer_means"] == history[0]["layer_means"]  # the same weights until the drop
