"""orthocli.training.loop: the schedule, early stopping, frozen sub-networks, masks against physically
removed filters, exact resume, and each built-in model end to end at tiny size."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from train_helpers import FAST, clone_state, convnet, states_equal

import orthocli.method.controller as controller
import orthocli.training.loop as training
from orthocli import seeding
from orthocli.config import TrainConfig
from orthocli.data import Arrays, DataSplits
from orthocli.errors import DataError, UsageError
from orthocli.network.models import ConvNet, arch_spec, build_model
from orthocli.training.loop import batches, evaluate, loss_fn, lr_at, phases, train

pytestmark = pytest.mark.usefixtures("one_thread")


# --- pure helpers ------------------------------------------------------------------------------


def test_phases_place_drops_and_reinits():
    steps = phases(TrainConfig(s1=2, s2=2, cycles=2))
    assert [s.name for s in steps] == ["standard"] * 2 + ["subnet"] * 2 + ["standard"] * 2 + ["subnet"] * 2 + [
        "final"
    ] * 2
    assert [i for i, s in enumerate(steps) if s.drop_before] == [2, 6]
    assert [i for i, s in enumerate(steps) if s.reinit_after] == [3, 7]
    assert [s.cycle for s in steps[:8]] == [1, 1, 1, 1, 2, 2, 2, 2]


def test_phases_budget_counts_every_epoch():
    assert len(phases(TrainConfig(s1=20, s2=10, cycles=3))) == 3 * 30 + 20  # default: final phase at most S1
    steps = phases(TrainConfig(s1=2, s2=1, cycles=2, max_epochs=10))
    assert len(steps) == 10 and [s.name for s in steps].count("final") == 4
    assert len(phases(TrainConfig(s1=2, s2=1, cycles=2, max_epochs=6))) == 6  # no final phase
    assert [s.name for s in phases(TrainConfig(s1=3, cycles=0))] == ["final"] * 3
    assert [s.name for s in phases(TrainConfig(s2=4), subnet_only=True)] == ["subnet"] * 4


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_epochs=5, s1=2, s2=1, cycles=2),
        dict(cycles=1, s2=0),
        dict(optimizer="rmsprop"),
        dict(loss="hinge"),
        dict(lr_schedule="linear"),
        dict(ratio=1.5),
        dict(scope="net"),
        dict(min_keep=0),
        dict(batch_size=0),
        dict(patience=0),
        dict(lr=-1.0),
    ],
)
def test_bad_config_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        TrainConfig(**bad)


def test_lr_schedules():
    cos = TrainConfig(lr=0.1, s1=10, cycles=0, lr_schedule="cosine")
    assert lr_at(0, cos) == pytest.approx(0.1) and lr_at(5, cos) == pytest.approx(0.05)
    step = dataclasses.replace(cos, lr_schedule="step")
    assert [round(lr_at(e, step), 6) for e in (0, 4, 5, 6, 7, 9)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert lr_at(9, dataclasses.replace(cos, lr_schedule="none")) == 0.1
    assert TrainConfig(optimizer="adam").peak_lr == 1e-3


def test_batches_are_seeded_per_epoch_and_cover_the_data():
    a, b = batches(131, 32, seed=3, epoch=2), batches(131, 32, seed=3, epoch=2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sorted(torch.cat(a).tolist()) == list(range(131))
    assert not torch.equal(torch.cat(a), torch.cat(batches(131, 32, seed=3, epoch=3)))
    assert [len(x) for x in batches(65, 32, seed=0, epoch=0)] == [32, 33]  # no batch of one (BatchNorm)


def test_min_steps_makes_an_epoch_of_whole_shuffled_passes():
    one = batches(45, 64, seed=1, epoch=4)
    many = batches(45, 64, seed=1, epoch=4, min_steps=25)
    assert len(one) == 1 and len(many) == 25  # 45 samples, batch 64: one step per pass
    assert torch.equal(many[0], one[0])  # the first pass is the one-pass epoch
    assert all(sorted(b.tolist()) == list(range(45)) for b in many)
    assert len({tuple(b.tolist()) for b in many}) == 25  # each pass shuffled anew
    passes = batches(100, 32, seed=0, epoch=0, min_steps=7)  # 4 batches a pass (32, 32, 32, 4): 2 passes
    assert len(passes) == 8 and sorted(torch.cat(passes).tolist()) == sorted(list(range(100)) * 2)
    large, plain = batches(3000, 64, seed=0, epoch=0, min_steps=25), batches(3000, 64, seed=0, epoch=0)
    assert len(large) == len(plain) == 47 and all(torch.equal(x, y) for x, y in zip(large, plain))  # already enough


def test_squared_error_is_the_patents_formula():
    logits, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2])
    p = logits.softmax(1)
    expected = sum(0.5 * sum((float(p[n, k]) - float(k == int(y[n]))) ** 2 for k in range(4)) for n in range(5)) / 5
    assert float(loss_fn("mse")(logits, y)) == pytest.approx(float(expected))


# --- the loop ----------------------------------------------------------------------------------


def test_train_follows_the_phases(digits, monkeypatch):
    """Drops before the first S2 epoch of each cycle, re-introduction after its last, all epochs counted."""
    calls = []
    real_drop, real_reint = controller.apply_drops, controller.reintroduce
    events = []
    done = lambda: sum(e["kind"] == "epoch" for e in events)  # noqa: E731
    monkeypatch.setattr(controller, "apply_drops", lambda *a: calls.append(("drop", done())) or real_drop(*a))
    monkeypatch.setattr(controller, "reintroduce", lambda *a: calls.append(("reinit", done())) or real_reint(*a))
    cfg = TrainConfig(s1=1, s2=2, cycles=2, max_epochs=8, patience=100, batch_size=32, ratio=0.1)
    result = train(convnet(digits), digits, cfg, callback=events.append)
    epochs = [e for e in events if e["kind"] == "epoch"]
    assert [e["phase"] for e in epochs] == [
        "standard",
        "subnet",
        "subnet",
        "standard",
        "subnet",
        "subnet",
        "final",
        "final",
    ]
    assert [e["epoch"] for e in epochs] == list(range(1, 9)) and result.epochs == 8
    # (what, epochs reported before it): drops at the end of epochs 1 and 4 (the last standard epoch of
    # each cycle, before its report), re-inits at the end of epochs 3 and 6
    assert calls == [("drop", 0), ("reinit", 2), ("drop", 3), ("reinit", 5)]
    assert [e["cycle"] for e in events if e["kind"] == "cycle"] == [1, 2]
    assert [c["cycle"] for c in result.cycles] == [1, 2]
    for c in result.cycles:
        assert sum(c["dropped"].values()) > 0 and "features.conv1" not in c["dropped"]  # skip_first
        assert all(0 <= c[k] <= 1 for k in ("val_before_drop", "val_after_subnet", "val_after_reinit"))


def test_no_skip_first_and_exclusions(digits):
    cfg = TrainConfig(**FAST, max_epochs=2, skip_first=False, ratio=0.1, exclude=["features.conv3"])
    result = train(convnet(digits), digits, cfg)
    assert set(result.cycles[0]["dropped"]) == {"features.conv1", "features.conv2"}


def test_early_stopping_restores_the_best_weights(digits, monkeypatch):
    """A learning rate too small to change accuracy, and a validation loss made to rise: no epoch
    beats the weights entering the final phase, so training stops after `patience` epochs and those
    weights come back bit for bit."""
    calls = []

    def rising_loss(*args, **kwargs):
        loss, acc = real_evaluate(*args, **kwargs)
        calls.append(1)
        return loss + len(calls), acc

    real_evaluate = training.evaluate
    monkeypatch.setattr(training, "evaluate", rising_loss)
    model = convnet(digits)
    start = clone_state(model)
    snaps = {}
    cfg = TrainConfig(cycles=0, max_epochs=20, patience=3, lr=1e-9, lr_schedule="none", batch_size=32)
    result = train(model, digits, cfg, callback=lambda e: snaps.update({e["epoch"]: clone_state(model)}))
    assert result.epochs == 3 and result.stopped_early and result.best_epoch == 0
    assert not states_equal(snaps[2], start)  # the weights did move a little
    assert states_equal(clone_state(model), start)


def test_best_epoch_is_the_best_validation_accuracy(digits):
    snaps = {}
    model = convnet(digits)
    cfg = TrainConfig(cycles=0, max_epochs=6, patience=100, lr=0.2, lr_schedule="none", batch_size=32)
    result = train(
        model, digits, cfg, callback=lambda e: snaps.update({e["epoch"]: (e["val_acc"], clone_state(model))})
    )
    accs = [snaps[e][0] for e in range(1, 7)]
    losses = [e["val_loss"] for e in result.history]
    best = max(range(6), key=lambda i: (accs[i], -losses[i], -i)) + 1  # best accuracy, then lowest loss
    assert result.best_epoch == best
    assert states_equal(clone_state(model), snaps[best][1])
    assert result.val_accuracy == pytest.approx(accs[best - 1])


def test_equal_validation_accuracy_goes_to_the_lower_validation_loss():
    # A saturated validation set (100% from the first epochs on): the first weights at 100% must not
    # win by default. For RePr those are the weights entering the final phase, right after the last
    # re-introduction, when the new filters do nothing yet (benchmarks/HISTORY.md, "Best-weight selection").
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 1, 16, generator=g) + 3 * torch.arange(2).repeat(120)[:, None, None] - 1.5
    y = torch.arange(2).repeat(120)
    data = DataSplits(
        Arrays(x[:160], y[:160]),
        Arrays(x[160:200], y[160:200]),
        Arrays(x[200:], y[200:]),
        2,
        1,
        (16,),
        [0.0],
        [1.0],
        "easy",
    )
    model = ConvNet(1, 2, [16], width=4)
    result = train(model, data, TrainConfig(s1=1, s2=1, cycles=1, max_epochs=8, patience=100, batch_size=32))
    final = [e for e in result.history if e["phase"] == "final"]
    assert all(e["val_acc"] == 1.0 for e in final)  # saturated: accuracy cannot choose
    chosen = min(final, key=lambda e: (e["val_loss"], e["epoch"]))
    assert result.best_epoch == chosen["epoch"] and result.best_epoch > final[0]["epoch"]
    assert evaluate(model, data.val)[0] == pytest.approx(chosen["val_loss"], rel=1e-5)  # its weights came back


def test_no_validation_data_trains_to_the_cap(digits):
    data = dataclasses.replace(digits, val=Arrays(digits.val.x[:0], digits.val.y[:0]))
    result = train(convnet(data), data, TrainConfig(cycles=0, max_epochs=3, patience=1, batch_size=32))
    assert result.epochs == 3 and result.val_accuracy is None and result.best_epoch is None


# --- resume ------------------------------------------------------------------------------------


class Stop(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("stop_after", [2, 5, 7])  # in S2 of cycle 1, in S2 of cycle 2, in the final phase
def test_resume_reaches_the_uninterrupted_result(digits, tmp_path, stop_after):
    cfg = TrainConfig(
        s1=1, s2=2, cycles=2, max_epochs=9, patience=100, batch_size=32, deterministic=True, weight_decay=0.01
    )
    full = convnet(digits, batchnorm=True)
    expected = train(full, digits, cfg)

    state = tmp_path / "run.pt.state"

    def interrupt(e):
        if e["kind"] == "epoch" and e["epoch"] == stop_after:
            raise Stop

    with pytest.raises(Stop):
        train(convnet(digits, batchnorm=True), digits, cfg, callback=interrupt, state_path=state)
    assert training.read_state(state).loop.epoch == stop_after
    resumed_model = convnet(digits, seed=99, batchnorm=True)  # the state file overrides the init
    resumed = train(resumed_model, digits, cfg, state_path=state, resume=True)
    assert states_equal(clone_state(resumed_model), clone_state(full))
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed.history) == strip(expected.history) and resumed.cycles == expected.cycles
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


def test_resume_refuses_another_configuration(digits, tmp_path):
    state = tmp_path / "s.state"
    train(convnet(digits), digits, TrainConfig(cycles=0, max_epochs=1, batch_size=32), state_path=state)
    with pytest.raises(UsageError, match="batch_size"):
        train(
            convnet(digits), digits, TrainConfig(cycles=0, max_epochs=1, batch_size=16), state_path=state, resume=True
        )


# --- end to end, bad input -----------------------------------------------------------------------


def test_sigmoid_and_squared_error_end_to_end(digits):
    model = convnet(digits, activation="sigmoid")
    cfg = TrainConfig(**FAST, max_epochs=3, loss="mse", lr=0.5)
    result = train(model, digits, cfg)
    assert result.epochs == 3 and result.test_accuracy is not None
    assert all(0 <= e["loss"] <= 1 for e in result.history)  # E is at most 1 per sample


def test_resnet20_end_to_end(digits):
    seeding.set_seed(0)
    model = build_model(arch_spec("resnet20", in_channels=1, num_classes=10, input_shape=[8, 8], width=4, blocks=1))
    result = train(model, digits, TrainConfig(**FAST, max_epochs=3, scope="layer"))
    assert result.epochs == 3 and len(result.cycles) == 1 and sum(result.cycles[0]["dropped"].values()) > 0


def test_baseline_same_budget_and_data_order(digits):
    cfg = TrainConfig(s1=1, s2=1, cycles=2, max_epochs=5, patience=100, batch_size=32)
    method = train(convnet(digits), digits, cfg)
    control = train(convnet(digits), digits, dataclasses.replace(cfg, baseline=True))
    assert control.epochs == method.epochs == 5
    assert [e["phase"] for e in control.history] == ["standard"] * 4 + ["final"]
    assert control.history[0]["loss"] == method.history[0]["loss"]  # same init, same batches
    assert control.summary().keys() == method.summary().keys()
    assert [c.keys() for c in control.cycles] == [c.keys() for c in method.cycles]
    assert all(c["dropped"] == {} for c in control.cycles)


def test_data_that_does_not_fit_the_model(digits):
    model = ConvNet(3, 10, [8, 8], width=4)
    with pytest.raises(DataError, match="does not fit"):
        train(model, digits, TrainConfig(cycles=0, max_epochs=1))
    with pytest.raises(DataError, match="labels out of range"):
        train(ConvNet(1, 4, [8, 8], width=4), digits, TrainConfig(cycles=0, max_epochs=1))


def test_evaluate_on_no_data(digits):
    assert evaluate(convnet(digits), None) == (None, None)


def test_bad_drop_options_fail_before_training(digits):
    events = []
    with pytest.raises(UsageError, match="no conv layer is left"):
        train(convnet(digits), digits, TrainConfig(**FAST, exclude=["features.*"]), callback=events.append)
    assert events == []


def test_a_threshold_that_selects_nothing_skips_that_cycles_drop(digits):
    result = train(convnet(digits), digits, TrainConfig(**FAST, max_epochs=2, threshold=0.9999))
    assert result.epochs == 2 and result.cycles[0]["dropped"] == {} and result.history[1]["phase"] == "subnet"


def test_config_by_option_name_round_trips_and_names_unknown_keys():
    cfg = TrainConfig(lr_schedule="cosine", layers=["features.*"], max_epochs=120)
    doc = cfg.to_dict()
    assert doc["schedule"] == "cosine" and "lr_schedule" not in doc  # the flag's name, as --config reads it
    assert TrainConfig.from_dict(doc) == cfg
    with pytest.raises(UsageError, match="unknown training option.*lr_sched"):
        TrainConfig.from_dict({**doc, "lr_sched": "step"})


def _random_walks(n: int = 100, length: int = 1500) -> DataSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, length, generator=g).cumsum(-1) / 10  # smooth, long, far from zero-mean per sample
    y = (x[:, 0, length // 2] > 0).long() + 2 * (x[:, 0, -1] > 0).long()
    cut = n * 9 // 10
    return DataSplits(Arrays(x[:cut], y[:cut]), Arrays(x[cut:], y[cut:]), None, 4, 1, (length,), [0.0], [1.0], "walks")


@pytest.mark.parametrize("fan_out", ["zero", "keep"])
def test_reintroduction_on_a_long_flattened_map(fan_out):
    # Conv1d on length-1500 signals into a wide Linear (187 positions x 8 channels): with the next
    # layer's weights kept (the paper) new filters move the output at once; zeroed, the network
    # computes exactly what the sub-network computed, so the loss cannot jump at re-introduction.
    data = _random_walks()
    torch.manual_seed(0)
    model = ConvNet(1, 4, [1500], width=8)
    cfg = TrainConfig(s1=1, s2=1, cycles=2, max_epochs=5, batch_size=32, ratio=0.1, reinit_fan_out=fan_out)
    pairs, last = [], {}

    def watch(event):
        if event["kind"] == "epoch":
            last.update(event)  # an S2 epoch's val_loss is the sub-network's, before re-introduction
        else:
            pairs.append((last["val_loss"], evaluate(model, data.val)[0]))

    result = train(model, data, cfg, callback=watch)
    assert len(pairs) == 2 and all(math.isfinite(e["loss"]) for e in result.history)
    for subnet_loss, after in pairs:
        if fan_out == "zero":
            assert after == pytest.approx(subnet_loss, rel=1e-4)
        else:
            assert after != pytest.approx(subnet_loss, rel=1e-4)  # the output moved
    if fan_out == "zero":
        fan = [r["fan_out_zeroed"] for c in result.cycles for r in c["reintroduced"].values()]
        assert fan and all(fan)  # conv2 -> conv3 and conv3 -> flatten -> Linear
