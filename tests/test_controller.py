"""The public API in a user's own loop: orthocli.RePr and the plain functions. What a user relies
on: the schedule of `orthocli train`, masks equal to removed filters, frozen filters that stay
bit-identical under SGD/Adam/AdamW, re-introduction that keeps the optimizer's parameters and
resets their state rows, steps counted only when they happen, and an exact resume."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import orthocli
from orthocli import RePr, ReprConfig, SubNetwork, drop, plan_drops, reinitialize, score
from orthocli.banks import banks_from_model, masked_forward
from orthocli.errors import CheckpointError, UsageError
from orthocli.models import ConvNet
from orthocli.orthogonality import orthogonality_scores
from orthocli.subnet import masks_from_record
from orthocli.training import TrainConfig, batches, phases, set_seed, train


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed: int = 0, activation: str = "relu") -> nn.Module:
    torch.manual_seed(seed)
    return ConvNet(1, 4, [8, 8], width=8, depth=3, activation=activation, batchnorm=True)


def make_data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def make_optimizer(model: nn.Module, name: str = "sgd") -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)


def run_epoch(model, optimizer, data, batch: int = 16) -> None:
    model.train()
    x, y = data
    for i in range(0, len(x), batch):
        loss = F.cross_entropy(model(x[i : i + batch]), y[i : i + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def frozen_values(model, record) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    return {
        ch["key"]: tensors[ch["key"]].detach().index_select(ch["dim"], layer["dropped"]).clone()
        for layer in record["layers"].values()
        for ch in layer["channels"]
    }


def clone_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- the package surface ---------------------------------------------------------------------


def test_import_orthocli_loads_no_torch_until_the_api_is_used():
    code = (
        "import sys, orthocli; assert 'torch' not in sys.modules, 'torch at import';"
        "[getattr(orthocli, n) for n in orthocli.__all__ if n != 'ReprCallback'];"
        "assert 'torch' in sys.modules and 'lightning' not in sys.modules; print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        orthocli.nothing  # noqa: B018


# --- plain functions ---------------------------------------------------------------------------


def test_score_a_module_and_its_state_dict():
    model = make_model()
    by_module, by_state = score(model), score(model.state_dict())
    assert list(by_module) == ["features.conv1", "features.conv2", "features.conv3"] == list(by_state)
    for name, s in by_module.items():
        assert torch.equal(s, orthogonality_scores(model.get_submodule(name).weight.detach()))
        assert torch.equal(s, by_state[name])


def test_plan_drop_and_reinitialize_in_place():
    model = make_model()
    params = {n: p for n, p in model.named_parameters()}
    plan = plan_drops(model, ratio=0.25)
    assert set(plan.drops) == {"features.conv2", "features.conv3"}  # the first conv is skipped
    assert all(len(idx) == 2 for idx in plan.drops.values())
    record = drop(model, plan)
    for name, idx in plan.drops.items():
        assert (model.get_submodule(name).weight[idx] == 0).all()
        bn = model.get_submodule(name.replace("conv", "bn"))
        assert (bn.weight[idx] == 0).all() and (bn.bias[idx] == 0).all()
    report = reinitialize(model, record, generator=torch.Generator().manual_seed(3))
    assert {n: r["null_space"] for n, r in report.items()} == {"features.conv2": 2, "features.conv3": 2}
    for name, idx in plan.drops.items():
        w = model.get_submodule(name).weight.detach().flatten(1).double()
        keep = torch.ones(len(w), dtype=torch.bool)
        keep[idx] = False
        old = next(c["old"] for c in record["layers"][name]["channels"] if c["role"] == "conv_weight").flatten(1)
        assert (w[idx] @ w[keep].T).abs().max() < 1e-4 * w.norm() ** 2  # orthogonal to every kept filter
        assert (w[idx] @ old.double().T).diagonal().abs().max() < 1e-4 * w.norm() ** 2  # and to its old value
    assert {n: p for n, p in model.named_parameters()} == params  # the same Parameter objects


def test_plan_drops_bad_rule_is_a_usage_error():
    with pytest.raises(UsageError, match="ratio must be between 0 and 1"):
        plan_drops(make_model(), ratio=1.5)


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
    ctrl = RePr(model, optimizer, s1=0, s2=2, cycles=1)
    run_epoch(model, optimizer, make_data())
    assert ctrl.record is not None and ctrl.phase == "subnet"
    assert [(n, type(m)) for n, m in model.named_modules()] == [(n, type(m)) for n, m in modules]
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert list(model.state_dict()) == fresh_keys
    make_model(seed=5).load_state_dict(model.state_dict(), strict=True)


# --- the schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize("s1,s2,cycles", [(1, 2, 2), (0, 1, 2), (2, 1, 1)])
def test_phases_follow_orthocli_train(s1, s2, cycles):
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=s1, s2=s2, cycles=cycles)
    expected = phases(TrainConfig(s1=s1, s2=s2, cycles=cycles, max_epochs=cycles * (s1 + s2) + 2))
    seen, data = [], make_data(16)
    for _ in expected:
        run_epoch(model, optimizer, data)
        seen.append((ctrl.phase, ctrl.cycle, ctrl.record is not None))
        ctrl.epoch_end()
    assert seen == [(p.name, p.cycle, p.name == "subnet") for p in expected]
    assert [c.cycle for c in ctrl.cycles] == list(range(1, cycles + 1))


@settings(max_examples=25, deadline=None)
@given(s1=st.integers(0, 4), s2=st.integers(1, 4), cycles=st.integers(0, 3), extra=st.integers(0, 3))
def test_the_schedule_is_trains_for_any_lengths(s1, s2, cycles, extra):
    model = make_model()
    ctrl = RePr(model, make_optimizer(model), s1=s1, s2=s2, cycles=cycles)
    expected = phases(TrainConfig(s1=s1, s2=s2, cycles=cycles, max_epochs=cycles * (s1 + s2) + extra))
    seen, ended = [], []
    for _ in expected:
        seen.append((ctrl.phase, ctrl.cycle, ctrl.drop_due))
        ctrl.prepare()  # (a training forward pass would make the drop)
        done = ctrl.epoch_end()
        ended.append(done.cycle if done is not None else None)
    assert seen == [(p.name, p.cycle, p.drop_before) for p in expected]
    assert ended == [p.cycle if p.reinit_after else None for p in expected]


def test_a_plain_loop_trains_exactly_as_orthocli_train(tmp_path):
    """The same data order, optimizer and options: the same weights, bit for bit."""
    from orthocli.data import prepare

    data = prepare(max_samples=120, seed=0)
    cfg = TrainConfig(s1=1, s2=2, cycles=1, max_epochs=3, batch_size=32, lr=0.05, weight_decay=0.01, ratio=0.4)
    set_seed(0)
    by_train = ConvNet(1, 10, [8, 8], width=6, batchnorm=True)
    result = train(by_train, data, cfg)

    set_seed(0)
    model = ConvNet(1, 10, [8, 8], width=6, batchnorm=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    ctrl = RePr(model, optimizer, s1=1, s2=2, cycles=1, ratio=0.4)
    for epoch in range(3):
        model.train()
        for idx in batches(len(data.train), 32, cfg.seed, epoch):
            loss = F.cross_entropy(model(data.train.x[idx]), data.train.y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        ctrl.epoch_end()
    assert all(torch.equal(v, by_train.state_dict()[k]) for k, v in model.state_dict().items())
    assert ctrl.cycles[0].dropped == result.cycles[0]["dropped"]
    assert ctrl.cycles[0].reintroduced == result.cycles[0]["reintroduced"]


# --- pitfalls ------------------------------------------------------------------------------------


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


def test_a_step_the_grad_scaler_skips_does_not_count():
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=2, s2=1, cycles=1, unit="step")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    x, y = make_data(8)
    for bad in (False, True, True, False):
        loss = F.cross_entropy(model(x), y) * (float("inf") if bad else 1.0)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert ctrl.step == 2  # two real steps; the two skipped ones counted nothing
    assert ctrl.phase == "subnet" and ctrl.record is None  # due now, made at the next training forward
    model(x)
    assert ctrl.record is not None


def test_evaluation_passes_do_not_advance_the_schedule_or_make_a_drop():
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=1, s2=1, cycles=1)
    data = make_data(16)
    run_epoch(model, optimizer, data)
    ctrl.epoch_end()
    state = clone_state(model)
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(data[0])
    assert (ctrl.epoch, ctrl.step, ctrl.record) == (1, 1, None)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    run_epoch(model, optimizer, data)
    assert ctrl.record is not None


def test_gradient_accumulation_counts_one_step_per_optimizer_step():
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=2, s2=2, cycles=1, unit="step")
    x, y = make_data(24)
    for i in range(12):  # micro-batches of 2, an optimizer step every 3
        loss = F.cross_entropy(model(x[2 * i : 2 * i + 2]), y[2 * i : 2 * i + 2]) / 3
        loss.backward()
        if i % 3 == 2:
            optimizer.step()
            optimizer.zero_grad()
        if i == 5:
            assert ctrl.step == 2 and ctrl.record is None  # S1 done, the drop not yet made
        if i == 6:
            assert ctrl.record is not None  # made at the first micro-batch of step 3
    assert ctrl.step == 4 and ctrl.record is None and [c.cycle for c in ctrl.cycles] == [1]


def _run(epochs: range, model, optimizer, ctrl, data) -> None:
    for _ in epochs:
        run_epoch(model, optimizer, data)
        ctrl.epoch_end()


@pytest.mark.parametrize("stop_after", [1, 3])  # mid-S1, mid-S2
def test_resume_into_a_fresh_model_continues_exactly(stop_after):
    options = dict(s1=2, s2=2, cycles=2, ratio=0.4, seed=7)
    data = make_data()
    full = make_model()
    full_opt = make_optimizer(full, "adam")
    full_ctrl = RePr(full, full_opt, **options)
    _run(range(9), full, full_opt, full_ctrl, data)

    model = make_model()
    optimizer = make_optimizer(model, "adam")
    ctrl = RePr(model, optimizer, **options)
    _run(range(stop_after), model, optimizer, ctrl, data)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "repr": ctrl.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    model = make_model(seed=99)  # fresh weights, overwritten by the load
    optimizer = make_optimizer(model, "adam")
    ctrl = RePr(model, optimizer, **options)
    ctrl.load_state_dict(saved["repr"])  # before or after the model: either way
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    assert (ctrl.phase, ctrl.epoch) == ("standard" if stop_after < 2 else "subnet", stop_after)
    _run(range(stop_after, 9), model, optimizer, ctrl, data)
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in model.state_dict().items())
    assert [c.dropped for c in ctrl.cycles] == [c.dropped for c in full_ctrl.cycles]


def test_resume_mid_sub_network_restores_masks_and_freezing():
    data = make_data()
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=1, s2=3, cycles=1)
    _run(range(2), model, optimizer, ctrl, data)
    saved = {"model": clone_state(model), "optimizer": optimizer.state_dict(), "repr": ctrl.state_dict()}
    fresh = make_model(seed=3)
    fresh_opt = make_optimizer(fresh)
    fresh.load_state_dict(saved["model"])
    fresh_opt.load_state_dict(saved["optimizer"])
    again = RePr(fresh, fresh_opt, s1=1, s2=3, cycles=1)
    again.load_state_dict(saved["repr"])
    assert again.phase == "subnet" and {n: m.tolist() for n, m in again.masks().items()} == {
        n: m.tolist() for n, m in ctrl.masks().items()
    }
    assert any(not m.all() for m in again.masks().values())
    frozen = frozen_values(fresh, again.record)
    run_epoch(fresh, fresh_opt, data)
    assert all(torch.equal(frozen_values(fresh, again.record)[k], v) for k, v in frozen.items())


def test_loading_a_state_of_other_options_or_another_kind_fails():
    model = make_model()
    ctrl = RePr(model, make_optimizer(model), s1=1, s2=1, cycles=1)
    other = RePr(make_model(), make_optimizer(make_model()), s1=2, s2=1, cycles=1, ratio=0.5)
    with pytest.raises(UsageError, match=r"differs in: ratio, s1"):
        other.load_state_dict(ctrl.state_dict())
    with pytest.raises(CheckpointError, match="not an orthocli RePr state"):
        ctrl.load_state_dict({"epoch": 3})


def test_bad_options_fail_at_creation():
    model = make_model()
    with pytest.raises(UsageError, match="no conv layer is left"):
        RePr(model, make_optimizer(model), layers=["nothing*"])
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


def test_uses_no_module_patching():
    model = make_model()
    optimizer = make_optimizer(model)
    step = type(optimizer).step
    forward = type(model).forward
    RePr(model, optimizer, s1=0, s2=1, cycles=1)
    run_epoch(model, optimizer, make_data(16))
    assert "step" not in vars(optimizer) and type(optimizer).step is step
    assert "forward" not in vars(model) and type(model).forward is forward


def test_a_drop_made_inside_an_autocast_forward_scores_in_full_precision(monkeypatch):
    from orthocli import controller

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


def test_the_controllers_defaults_are_orthocli_trains():
    assert TrainConfig().method() == ReprConfig()
    cfg = TrainConfig(s1=2, s2=3, cycles=4, ratio=0.2, scope="global", exclude=["a*"], reinit_scale=0.5, seed=9)
    assert cfg.method() == ReprConfig(
        s1=2, s2=3, cycles=4, ratio=0.2, scope="global", exclude=["a*"], reinit_scale=0.5, seed=9
    )


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


def test_a_record_of_another_model_is_a_clear_error():
    record = drop(make_model(), {"features.conv2": torch.tensor([1])})
    other = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3))
    with pytest.raises(CheckpointError, match=r"does not have \(features.bn2.bias, .*another model"):
        SubNetwork(other, make_optimizer(other), record)
