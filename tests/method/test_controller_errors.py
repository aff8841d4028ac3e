"""orthocli.RePr and the plain functions refuse bad options, untraceable models and records of
another model with a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_helpers import make_data, make_model, make_optimizer, run_epoch

from orthocli import RePr, ReprConfig, SubNetwork, drop, plan_drops
from orthocli.errors import CheckpointError, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_plan_drops_bad_rule_is_a_usage_error():
    with pytest.raises(UsageError, match="ratio must be between 0 and 1"):
        plan_drops(make_model(), ratio=1.5)


def test_bad_options_fail_at_creation():
    model = make_model()
    with pytest.raises(UsageError, match=r"^layers 'nothing\*' matches no conv layer; the layers are: features\.conv1"):
        RePr(model, make_optimizer(model), layers=["nothing*"])
    with pytest.raises(UsageError, match="no conv layer is left"):  # each pattern names a layer, together none
        RePr(model, make_optimizer(model), layers=["conv1"], exclude=["features.*"])
    with pytest.raises(UsageError, match="unit must be"):
        ReprConfig(unit="batch")
    with pytest.raises(TypeError):
        RePr(model, make_optimizer(model), ReprConfig(), s1=3)


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.conv(x)
        return self.conv(-x)


def test_an_untraceable_model_is_a_usage_error():
    model = Untraceable()
    with pytest.raises(UsageError, match="cannot be traced by torch.fx"):
        RePr(model, make_optimizer(model))


def test_a_record_of_another_model_is_a_clear_error():
    record = drop(make_model(), {"features.conv2": torch.tensor([1])})
    other = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3))
    with pytest.raises(CheckpointError, match=r"does not have \(features.bn2.bias, .*another model"):
        SubNetwork(other, make_optimizer(other), record)


# --- misuse is refused, never run wrong ----------------------------------------------------------


def test_an_optimizer_that_does_not_hold_the_layers_is_refused():
    model = make_model()
    with pytest.raises(UsageError, match=r"the optimizer holds none of the parameters .*\(model\.parameters\(\)\)"):
        RePr(model, make_optimizer(make_model(seed=1)))  # another model's parameters
    part = torch.optim.SGD([p for n, p in model.named_parameters() if "conv3" not in n], lr=0.1)
    with pytest.raises(UsageError, match=r"holds \d+ of \d+ of the parameters .*features.conv3.weight"):
        RePr(model, part)
    RePr(model, part, exclude=["features.conv3"])  # leaving the layer out is the documented way


def test_a_closure_optimizer_is_refused():
    model = make_model()
    with pytest.raises(
        UsageError, match="does not support LBFGS: its step\\(\\) evaluates the model through a closure"
    ):
        RePr(model, torch.optim.LBFGS(model.parameters()))


def test_epoch_end_without_a_step_warns_and_a_phase_that_never_trained_says_so():
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=1, s2=1, cycles=1, ratio=0.25)
    run_epoch(model, optimizer, make_data(16))
    ctrl.epoch_end()  # S1 trained: the drop is made
    with pytest.warns(RuntimeWarning, match=r"epoch_end\(\) was called with no optimizer step"):
        done = ctrl.epoch_end()
    assert done.dropped and done.steps == 0 and not done.trained  # dropped, but never trained


def test_library_errors_name_the_librarys_parameters():
    model = make_model()
    with pytest.raises(UsageError) as e:
        RePr(model, make_optimizer(model), layers=["conv1"], exclude=["features.*"])
    assert "loosen layers/exclude/skip_first/skip_last" in str(e.value) and "--" not in str(e.value)
    with pytest.raises(UsageError) as e:
        RePr(Untraceable(), make_optimizer(Untraceable()))
    assert "train without the method (cycles 0)" in str(e.value) and "--" not in str(e.value)
