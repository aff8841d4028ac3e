"""orthocli.RePr's schedule: the phases of `orthocli train`, steps counted only when they happen,
the same defaults and the same weights as `orthocli train`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from train_helpers import clone_state, make_data, make_model, make_optimizer, run_epoch

from orthocli import RePr, ReprConfig
from orthocli.config import TrainConfig
from orthocli.network.models import ConvNet
from orthocli.seeding import set_seed
from orthocli.training.loop import batches, phases, train

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize("s1,s2,cycles", [(1, 2, 2), (0, 1, 2), (2, 1, 1)])
def test_phases_follow_orthocli_train(s1, s2, cycles):
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=s1, s2=s2, cycles=cycles, ratio=0.25)
    expected = phases(TrainConfig(s1=s1, s2=s2, cycles=cycles, max_epochs=cycles * (s1 + s2) + 2))
    seen, data = [], make_data(16)
    for _ in expected:
        run_epoch(model, optimizer, data)
        seen.append((ctrl.phase, ctrl.cycle, ctrl.record is not None))
        ctrl.epoch_end()
    assert seen == [(p.name, p.cycle, p.name == "subnet") for p in expected]
    assert [c.cycle for c in ctrl.cycles] == list(range(1, cycles + 1))


@pytest.mark.filterwarnings("ignore:RePr.epoch_end\\(\\) was called with no optimizer step")
@settings(max_examples=25, deadline=None)
@given(s1=st.integers(0, 4), s2=st.integers(1, 4), cycles=st.integers(0, 3), extra=st.integers(0, 3))
def test_the_schedule_is_trains_for_any_lengths(s1, s2, cycles, extra):
    model = make_model()
    ctrl = RePr(model, make_optimizer(model), s1=s1, s2=s2, cycles=cycles, ratio=0.25)
    expected = phases(TrainConfig(s1=s1, s2=s2, cycles=cycles, max_epochs=cycles * (s1 + s2) + extra))
    seen, ended = [], []
    for _ in expected:
        ctrl.prepare()  # only a drop due from the start waits for it (or a training forward pass)
        seen.append((ctrl.phase, ctrl.cycle, ctrl.record is not None))
        done = ctrl.epoch_end()  # re-introduces after a cycle's last S2 epoch, drops before its first
        ended.append(done.cycle if done is not None else None)
    assert seen == [(p.name, p.cycle, p.name == "subnet") for p in expected]
    assert ended == [p.cycle if p.reinit_after else None for p in expected]


def test_a_plain_loop_trains_exactly_as_orthocli_train(tmp_path):
    """The same data order, optimizer and options: the same weights, bit for bit."""
    from orthocli.data import prepare

    data = prepare("digits", max_samples=120, seed=0)
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
        for idx in batches(len(data.train), 32, cfg.seed, epoch, min_steps=cfg.min_steps):
            loss = F.cross_entropy(model(data.train.x[idx]), data.train.y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        ctrl.epoch_end()
    assert all(torch.equal(v, by_train.state_dict()[k]) for k, v in model.state_dict().items())
    assert ctrl.cycles[0].dropped == result.cycles[0]["dropped"]
    assert ctrl.cycles[0].reintroduced == result.cycles[0]["reintroduced"]


def test_a_step_the_grad_scaler_skips_does_not_count():
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=2, s2=1, cycles=1, unit="step", ratio=0.25)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**4)
    x, y = make_data(8)
    for bad in (False, True, True, False):
        loss = F.cross_entropy(model(x), y) * (float("inf") if bad else 1.0)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    assert ctrl.step == 2  # two real steps; the two skipped ones counted nothing
    assert ctrl.phase == "subnet" and ctrl.record is not None  # made when the second real step ended S1


def test_evaluation_passes_do_not_advance_the_schedule_or_make_a_drop():
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=1, s2=1, cycles=1, ratio=0.25)
    data = make_data(16)
    run_epoch(model, optimizer, data)
    ctrl.epoch_end()
    state = clone_state(model)
    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(data[0])
    assert (ctrl.epoch, ctrl.step) == (1, 1) and ctrl.record is not None  # dropped when S1's epoch ended
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    run_epoch(model, optimizer, data)
    assert ctrl.phase == "subnet" and ctrl.record is not None


def test_gradient_accumulation_counts_one_step_per_optimizer_step():
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=2, s2=2, cycles=1, unit="step", ratio=0.25)
    x, y = make_data(24)
    for i in range(12):  # micro-batches of 2, an optimizer step every 3
        loss = F.cross_entropy(model(x[2 * i : 2 * i + 2]), y[2 * i : 2 * i + 2]) / 3
        loss.backward()
        if i % 3 == 2:
            optimizer.step()
            optimizer.zero_grad()
        if i == 4:
            assert ctrl.step == 1 and ctrl.record is None  # S1 not done
        if i == 5:
            assert ctrl.step == 2 and ctrl.record is not None  # made when the step ending S1 ended
    assert ctrl.step == 4 and ctrl.record is None and [c.cycle for c in ctrl.cycles] == [1]


def test_the_controllers_defaults_are_orthocli_trains():
    assert TrainConfig().method_dict() == ReprConfig().method_dict()
    cfg = TrainConfig(s1=2, s2=3, cycles=4, ratio=0.2, scope="global", exclude=["a*"], reinit_scale=0.5, seed=9)
    assert isinstance(cfg, ReprConfig)  # train's options extend the method's: declared once
    assert (
        cfg.method_dict()
        == ReprConfig(
            s1=2, s2=3, cycles=4, ratio=0.2, scope="global", exclude=["a*"], reinit_scale=0.5, seed=9
        ).method_dict()
    )
