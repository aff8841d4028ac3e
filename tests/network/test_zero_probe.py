"""Whether a dropped filter is silent is decided by what each step does to zero, found by running
it, not by a list of names: a module the lists do not know is followed and, where it maps zero to
non-zero, masked; behind a concatenation such a step makes the conv a non-candidate."""

from __future__ import annotations

import torch
from torch import nn

from orthocli import SubNetwork, drop, plan_drops
from orthocli.network.banks import fixed_layers
from orthocli.network.graph import ModelGraph


class PlusOne(nn.Module):  # per channel, f(0) = 1; torch.fx traces into it: x + 1
    def forward(self, x):
        return x + 1


class Net(nn.Module):
    def __init__(self, step: nn.Module) -> None:
        super().__init__()
        self.a, self.step, self.b = nn.Conv2d(3, 6, 3), step, nn.Conv2d(6, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.b(self.step(self.a(x))).mean((2, 3)))


def _reads(model, x):
    seen = []
    model.b.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    return seen[0]


def test_an_unknown_step_that_maps_zero_to_non_zero_is_masked():
    x = torch.randn(2, 3, 8, 8)
    # nn.Threshold(0.5, 2.0): x where x > 0.5, else 2 (so f(0) = 2); known to no list
    for step, hooked in ((nn.Threshold(0.5, 2.0), True), (nn.Hardsigmoid(), True), (nn.Dropout(0.5), False)):
        model = Net(step).train()
        record = drop(model, {"a": torch.tensor([1, 4])})
        sub = SubNetwork(model, torch.optim.SGD(model.parameters(), lr=0.1), record)
        assert bool(sub._masks.hooked) is hooked, step
        reads = _reads(model, x)
        assert reads[:, [1, 4]].abs().max() == 0 and reads[:, [0, 2]].abs().max() > 0, step


class CatThenShift(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.shift, self.c = PlusOne(), nn.Conv2d(8, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.c(self.shift(torch.cat([self.a(x), self.b(x)], 1))).mean((2, 3)))


def test_a_step_past_the_mask_point_that_maps_zero_to_non_zero_leaves_the_conv_out():
    model = CatThenShift()
    reasons = fixed_layers(ModelGraph.trace(model))
    assert "maps a zero channel to non-zero" in reasons["a"] and "maps a zero channel to non-zero" in reasons["b"]
    plan = plan_drops(model, ratio=0.5, skip_first=False)
    assert "a" not in plan.drops and "b" not in plan.drops and "c" in plan.drops
    assert "would not be silent: its channels pass 'add'" in plan.reasons["a"]


def test_probing_a_step_leaves_the_global_random_state_alone():
    model = Net(nn.Dropout(0.5)).train()
    torch.manual_seed(3)
    want = torch.rand(3)
    torch.manual_seed(3)
    fixed_layers(ModelGraph.trace(model))
    assert torch.equal(torch.rand(3), want)
