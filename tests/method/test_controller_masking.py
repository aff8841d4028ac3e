"""orthocli.RePr in a user's own loop, masking and freezing: masks equal to removed filters, the
user's modules left as they were, frozen filters that stay bit-identical under SGD/Adam/AdamW,
re-introduction that keeps the optimizer's parameters and resets their state rows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from train_helpers import clone_state, frozen_values, make_data, make_model, make_optimizer, run_epoch

from orthocli import RePr, SubNetwork, drop, plan_drops, score
from orthocli.method.masking import masks_from_record
from orthocli.network.banks import banks_from_model, masked_forward

pytestmark = pytest.mark.usefixtures("one_thread")


# --- masking -----------------------------------------------------------------------------------


def _kept(n: int, dropped: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[dropped] = False
    return keep.nonzero().flatten()


def test_masked_model_equals_the_physically_smaller_one():
    """Sigmoid (f(0) = 0.5), conv biases and BatchNorm (BN(0) != 0), in the user's own module."""
    model = make_model(activation="sigmoid").eval()
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(8, generator=gen))
            m.running_var.copy_(torch.rand(8, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(8, generator=gen))
            m.bias.data.copy_(torch.randn(8, generator=gen))
    original = clone_state(model)
    drops = {f"features.conv{i}": torch.tensor(d) for i, d in ((1, [0, 4]), (2, [1, 2, 5]), (3, [3]))}
    SubNetwork(model, make_optimizer(model), drop(model, drops))

    x = torch.randn(4, 1, 8, 8, generator=gen)
    h, cols = x, torch.arange(1)
    for i in (1, 2, 3):
        keep = _kept(8, drops[f"features.conv{i}"])
        p = lambda name: original[f"features.{name}"]  # noqa: E731
        h = F.conv2d(h, p(f"conv{i}.weight")[keep][:, cols], p(f"conv{i}.bias")[keep], padding=1)
        h = F.batch_norm(
            h, p(f"bn{i}.running_mean")[keep], p(f"bn{i}.running_var")[keep], p(f"bn{i}.weight")[keep],
            p(f"bn{i}.bias")[keep], False, 0.0, 1e-5,
        )  # fmt: skip
        h = F.max_pool2d(torch.sigmoid(h), 2)
        cols = keep
    spatial = h.shape[2] * h.shape[3]
    fc_cols = (cols[:, None] * spatial + torch.arange(spatial)).flatten()
    expected = F.linear(h.flatten(1), original["classifier.weight"][:, fc_cols], original["classifier.bias"])
    with torch.no_grad():
        assert torch.allclose(model(x), expected, atol=1e-5)


class SharedAct(nn.Module):
    """One ReLU module called after both convs (as in torchvision's ResNet blocks): the mask cannot
    sit on it, so it goes on the BatchNorm before it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.relu, self.fc = nn.ReLU(), nn.Linear(6, 3)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)) + h)
        return self.fc(h.mean((2, 3)))


def test_hooks_give_the_masked_trace_of_orthocli_train_exactly():
    torch.manual_seed(0)
    model = SharedAct()
    run_epoch(model, make_optimizer(model), (torch.randn(16, 1, 6, 6), torch.randint(0, 3, (16,))))
    model.eval()
    record = drop(model, {"conv1": torch.tensor([0, 3]), "conv2": torch.tensor([1])})
    net, masks = masked_forward(model, banks_from_model(model))
    masks_from_record(record, masks)
    sub = SubNetwork(model, make_optimizer(model), record)
    x = torch.randn(5, 1, 6, 6)
    with torch.no_grad():
        assert torch.equal(model(x), net(x))
        sub.remove()  # no hook is left behind
        assert all(not m._forward_hooks for m in model.modules())


def test_the_model_keeps_its_modules_parameters_and_state_dict_keys():
    model = make_model()
    optimizer = make_optimizer(model)
    modules, params = list(model.named_modules()), list(model.parameters())
    fresh_keys = list(make_model(seed=5).state_dict())
    ctrl = RePr(model, optimizer, s1=0, s2=2, cycles=1, ratio=0.25)
    run_epoch(model, optimizer, make_data())
    assert ctrl.record is not None and ctrl.phase == "subnet"
    assert [(n, type(m)) for n, m in model.named_modules()] == [(n, type(m)) for n, m in modules]
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert list(model.state_dict()) == fresh_keys
    make_model(seed=5).load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_dropped_filters_stay_bit_identical_and_reintroduction_resets_state_rows(name):
    model = make_model()
    optimizer = make_optimizer(model, name)
    ctrl = RePr(model, optimizer, s1=1, s2=3, cycles=1, ratio=0.5)
    data = make_data()
    run_epoch(model, optimizer, data)
    ctrl.epoch_end()
    run_epoch(model, optimizer, data)  # the drop is made at its first forward pass
    record = ctrl.record
    frozen = frozen_values(model, record)
    roles = {ch["role"] for layer in record["layers"].values() for ch in layer["channels"]}
    assert {"conv_weight", "conv_bias", "bn_weight", "bn_bias", "bn_mean", "bn_var"} <= roles
    before = clone_state(model)
    for _ in range(2):
        ctrl.epoch_end()
        now = frozen_values(model, record)
        assert all(torch.equal(now[k], frozen[k]) for k in frozen)
        run_epoch(model, optimizer, data)
    assert not torch.equal(model.features.conv2.weight, before["features.conv2.weight"])  # the rest trained
    params = list(model.parameters())
    done = ctrl.epoch_end()
    assert done is not None and ctrl.record is None and ctrl.phase == "final"
    # the optimizer still holds the live parameters, and their state rows start from zero
    assert all(a is b for a, b in zip(optimizer.param_groups[0]["params"], params))
    assert all(a is b for a, b in zip(model.parameters(), params))
    for layer in record["layers"].values():
        for ch in layer["channels"]:
            p = model.get_parameter(ch["key"]) if ch["role"] not in ("bn_mean", "bn_var") else None
            if p is None:
                continue
            rows = [v for v in optimizer.state[p].values() if isinstance(v, torch.Tensor) and v.shape == p.shape]
            assert rows and all((v.index_select(ch["dim"], layer["dropped"]) == 0).all() for v in rows)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())  # no overhead left


def test_an_output_conv_keeps_every_filter_as_in_orthocli_train():
    """A fully convolutional classifier: the last conv's channels are the class scores."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=0, s2=1, cycles=1, ratio=0.5)
    run_epoch(model, optimizer, make_data(16))
    assert set(ctrl.record["layers"]) == {"2"}  # not "0" (the first conv), not "4" (the output)
    assert "4" in plan_drops(model, ratio=0.5).reasons


def test_a_drop_made_inside_an_autocast_forward_scores_in_full_precision(monkeypatch):
    import orthocli.method.controller as controller

    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=0, s2=1, cycles=1, ratio=0.4)
    expected, seen = score(model), {}
    real = controller.plan_drops

    def spy(*args, **kwargs):
        plan = real(*args, **kwargs)
        seen.update({c.layer.name: c.scores for c in plan.candidates})
        return plan

    monkeypatch.setattr(controller, "plan_drops", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(make_data(4)[0])  # the first training forward makes the due drop
    assert ctrl.record is not None and seen
    assert all(torch.equal(seen[k], expected[k]) for k in seen)  # float32, as outside autocast


def test_uses_no_module_patching():
    model = make_model()
    optimizer = make_optimizer(model)
    step = type(optimizer).step
    forward = type(model).forward
    RePr(model, optimizer, s1=0, s2=1, cycles=1)
    run_epoch(model, optimizer, make_data(16))
    assert "step" not in vars(optimizer) and type(optimizer).step is step
    assert "forward" not in vars(model) and type(model).forward is forward
