"""orthocli.RePr and the plain functions refuse bad options, untraceable models and records of
another model with a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from train_helpers import make_model, make_optimizer

from orthocli import RePr, ReprConfig, SubNetwork, drop, plan_drops
from orthocli.errors import CheckpointError, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_plan_drops_bad_rule_is_a_usage_error():
    with pytest.raises(UsageError, match="ratio must be between 0 and 1"):
        plan_drops(make_model(), ratio=1.5)


def test_bad_options_fail_at_creation():
    model = make_model()
    with pytest.raises(
        UsageError, match=r"--layers 'nothing\*' matches no conv layer; the layers are: features\.conv1"
    ):
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
