"""Dropped means dropped, and a re-introduction keeps the network's output, in the graphs users
train: a residual block, a concatenation, a depthwise separable block, a grouped reader. With
`reinit_fan_out="zero"` whatever reads a re-introduced channel is found and zeroed (through a
residual add, the branch's BatchNorm starts at zero instead); where it cannot be found (a bare
state dict) the report says so."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from graph_models import make
from train_helpers import frozen_values

from orthocli import RePr, SubNetwork, drop, reinitialize

pytestmark = pytest.mark.usefixtures("one_thread")

X = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))

# (kind, the layer dropped from, filters, what re-introduction does to what reads them)
CASES = [
    ("residual", "conv2", [1, 5], "zeroed"),  # conv2 -> bn2 -> relu -> conv3: conv3 reads it
    ("residual", "conv3", [0, 6], "silenced"),  # conv3 -> bn3 -> + skip: its BatchNorm starts at zero
    ("concat", "b", [1, 2], "zeroed"),  # b's channels are c's inputs 8 and 9 (after a's 8)
    ("separable", "pw1", [2, 7], "zeroed"),  # through the depthwise conv to pw2
    ("grouped", "a", [1, 6], "zeroed"),  # read by the filters of their group of g
]


@pytest.mark.parametrize("kind,layer,filters,fan_out", CASES)
def test_the_output_is_unchanged_at_reintroduction(kind, layer, filters, fan_out):
    model = make(kind)
    record = drop(model, {layer: torch.tensor(filters)})
    with torch.no_grad():
        before = model(X)
        report = reinitialize(model, record)
        after = model(X)
    assert report[layer]["fan_out"] == fan_out and report[layer]["fan_out_zeroed"]
    weight = model.get_submodule(layer).weight
    assert weight[filters].abs().sum() > 0  # the filters are back, with new values
    assert torch.allclose(after, before, atol=1e-6), (after - before).abs().max()


def test_the_readers_found_are_exactly_those_of_the_channels():
    concat = make("concat")
    record = drop(concat, {"b": torch.tensor([1, 2])})
    (entry,) = record["layers"]["b"]["fan_out"]
    assert entry["key"] == "c.weight" and entry["index"].tolist() == [9, 10]  # after a's 8 channels
    grouped = make("grouped")
    record = drop(grouped, {"a": torch.tensor([1, 6])})
    entries = record["layers"]["a"]["fan_out"]
    # channel 1 is input 1 of group 0 (filters 0-3), channel 6 input 2 of group 1 (filters 4-7)
    assert [(e["index"].tolist(), e["rows"].tolist()) for e in entries] == [([1], [0, 1, 2, 3]), ([2], [4, 5, 6, 7])]


def test_a_bare_state_dict_says_the_output_is_not_kept():
    model = make("separable")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    record = drop(state, {"pw1": torch.tensor([2])})
    report = reinitialize(state, record)
    assert report["pw1"]["fan_out"] == "unknown" and not report["pw1"]["fan_out_zeroed"]
    assert "graph is unknown" in report["pw1"]["fan_out_note"]


def test_the_depthwise_follower_is_dropped_with_its_channel():
    """While pw1's channel is dropped the depthwise conv's filter, bias and BatchNorm for it are zero
    (and stay so through training), and pw2 reads exactly zero from it."""
    model = make("separable").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    sub = SubNetwork(model, optimizer, drop(model, {"pw1": torch.tensor([2, 7])}))
    seen = []
    model.pw2.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    for t in (model.dw.weight, model.dw.bias, model.bn2.weight, model.bn2.bias):
        assert torch.count_nonzero(t[[2, 7]]) == 0
    assert all(torch.count_nonzero(h[:, [2, 7]]) == 0 for h in seen) and seen
    sub.remove()


def test_the_controller_drops_the_depthwise_follower_too():
    model = make("separable").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ctrl = RePr(model, optimizer, s1=0, s2=2, cycles=1, ratio=0.25, layers=["pw1"])
    g = torch.Generator().manual_seed(4)
    for _ in range(2):
        for _ in range(3):
            x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        if ctrl.record is not None:
            record = ctrl.record
            dropped = record["layers"]["pw1"]["dropped"]
            assert record["layers"]["pw1"]["follow"] == ["dw"]
            assert (
                torch.count_nonzero(model.dw.weight[dropped]) == 0
                and torch.count_nonzero(model.bn2.weight[dropped]) == 0
            )
            frozen = frozen_values(model, record)
        ctrl.epoch_end()
    assert ctrl.cycles[0].reintroduced["pw1"]["fan_out"] == "zeroed" and frozen
