"""orthocli.training: the schedule, early stopping, frozen sub-networks, masks against physically
removed filters, exact resume, and each built-in model end to end at tiny size."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from orthocli import training
from orthocli.banks import banks_from_model, masked_forward
from orthocli.data import Arrays, prepare
from orthocli.errors import DataError, UsageError
from orthocli.models import ConvNet, ResNet20, arch_spec, build_model, init_weights
from orthocli.subnet import apply_drops, make_record, masks_from_record
from orthocli.training import TrainConfig, batches, evaluate, loss_fn, lr_at, phases, train

FAST = dict(s1=1, s2=1, cycles=1, patience=100, batch_size=32)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny models: a second intra-op thread costs more than it saves, and far more on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return prepare(max_samples=120, seed=0)  # 108 train, 12 val, 359 test, 1x8x8, 10 classes


def convnet(data, seed=0, **options):
    training.set_seed(seed)
    arch = arch_spec(
        "convnet",
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        input_shape=list(data.spatial_shape),
        **{"width": 6, **options},
    )
    model = build_model(arch)
    init_weights(model, options.get("activation", "relu"))
    return model


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def clone_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


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


def test_squared_error_is_the_patents_formula():
    logits, y = torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2])
    p = logits.softmax(1)
    expected = sum(0.5 * sum((float(p[n, k]) - float(k == int(y[n]))) ** 2 for k in range(4)) for n in range(5)) / 5
    assert float(loss_fn("mse")(logits, y)) == pytest.approx(float(expected))


# --- the loop ----------------------------------------------------------------------------------


def test_train_follows_the_phases(digits, monkeypatch):
    """Drops before the first S2 epoch of each cycle, re-introduction after its last, all epochs counted."""
    calls = []
    real_drop, real_reint = training.drop_filters, training.reintroduce
    events = []
    done = lambda: sum(e["kind"] == "epoch" for e in events)  # noqa: E731
    monkeypatch.setattr(training, "drop_filters", lambda *a: calls.append(("drop", done())) or real_drop(*a))
    monkeypatch.setattr(training, "reintroduce", lambda *a: calls.append(("reinit", done())) or real_reint(*a))
    cfg = TrainConfig(s1=1, s2=2, cycles=2, max_epochs=8, patience=100, batch_size=32)
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
    # (what, epochs reported before it): drops before epochs 2 and 5, re-inits at the end of epochs 3 and 6
    assert calls == [("drop", 1), ("reinit", 2), ("drop", 4), ("reinit", 5)]
    assert [e["cycle"] for e in events if e["kind"] == "cycle"] == [1, 2]
    assert [c["cycle"] for c in result.cycles] == [1, 2]
    for c in result.cycles:
        assert sum(c["dropped"].values()) > 0 and "features.conv1" not in c["dropped"]  # skip_first
        assert all(0 <= c[k] <= 1 for k in ("val_before_drop", "val_after_subnet", "val_after_reinit"))


def test_no_skip_first_and_exclusions(digits):
    cfg = TrainConfig(**FAST, max_epochs=2, skip_first=False, scope="layer", exclude=["features.conv3"])
    result = train(convnet(digits), digits, cfg)
    assert set(result.cycles[0]["dropped"]) == {"features.conv1", "features.conv2"}


def test_early_stopping_restores_the_best_weights(digits):
    """A learning rate too small to change accuracy: no epoch beats the weights entering the final
    phase, so training stops after `patience` epochs and those weights come back bit for bit."""
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
    best = max(range(6), key=lambda i: (accs[i], -i)) + 1  # first epoch with the best accuracy
    assert result.best_epoch == best
    assert states_equal(clone_state(model), snaps[best][1])
    assert result.val_accuracy == pytest.approx(accs[best - 1])


def test_no_validation_data_trains_to_the_cap(digits):
    data = dataclasses.replace(digits, val=Arrays(digits.val.x[:0], digits.val.y[:0]))
    result = train(convnet(data), data, TrainConfig(cycles=0, max_epochs=3, patience=1, batch_size=32))
    assert result.epochs == 3 and result.val_accuracy is None and result.best_epoch is None


# --- the sub-network -----------------------------------------------------------------------------


def _dropped_values(model, record) -> dict:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    return {
        ch["key"]: tensors[ch["key"]].detach().index_select(ch["dim"], layer["dropped"]).clone()
        for layer in record["layers"].values()
        for ch in layer["channels"]
    }


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_dropped_filters_stay_bit_identical_during_s2(digits, monkeypatch, optimizer):
    """Momentum, weight decay and Adam's moments would all move them; weights, biases, BatchNorm
    affine parameters and running statistics must not change while the sub-network trains."""
    seen = {}
    real_drop = training.drop_filters

    def spy(model, banks, cfg, rt=None):
        record = real_drop(model, banks, cfg, rt)
        seen.update(model=model, record=record, frozen=_dropped_values(model, record), kept=clone_state(model))
        return record

    checks = []

    def check(e=None):
        if e is None or (e["kind"] == "epoch" and e["phase"] == "subnet" and e["epoch"] < 4):
            now = _dropped_values(seen["model"], seen["record"])
            checks.append(all(torch.equal(now[k], seen["frozen"][k]) for k in now))

    real_reint = training.reintroduce
    monkeypatch.setattr(training, "drop_filters", spy)
    monkeypatch.setattr(training, "reintroduce", lambda *a: check() or real_reint(*a))  # after the last S2 epoch

    cfg = TrainConfig(
        s1=1,
        s2=3,
        cycles=1,
        max_epochs=4,
        optimizer=optimizer,
        lr=0.05 if optimizer == "sgd" else 0.01,
        momentum=0.9,
        weight_decay=0.05,
        batch_size=32,
    )
    model = convnet(digits, batchnorm=True)
    train(model, digits, cfg, callback=check)
    assert checks == [True, True, True]
    roles = {ch["role"] for layer in seen["record"]["layers"].values() for ch in layer["channels"]}
    assert {"conv_weight", "conv_bias", "bn_weight", "bn_bias", "bn_mean", "bn_var"} <= roles
    # the kept filters did train
    w = seen["model"].features.conv2.weight
    assert not torch.equal(w, seen["kept"]["features.conv2.weight"])


def test_pruned_start_trains_the_sub_network_only(digits):
    model = convnet(digits, batchnorm=True)
    train(model, digits, TrainConfig(cycles=0, max_epochs=1, batch_size=32))
    cfg = TrainConfig(s2=2, ratio=0.5, batch_size=32, weight_decay=0.1)
    record = training.drop_filters(model, banks_from_model(model), cfg)
    frozen = _dropped_values(model, record)
    result = train(model, digits, cfg, record=record)
    assert [e["phase"] for e in result.history] == ["subnet", "subnet"] and result.record is record
    now = _dropped_values(model, record)
    assert all(torch.equal(now[k], frozen[k]) for k in now)


def _filters(n: int, *picks: int) -> torch.Tensor:
    return torch.tensor(sorted({p % n for p in picks}), dtype=torch.long)


def _randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=gen))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=gen))


def _masked(model, drops):
    banks = banks_from_model(model)
    record = make_record(model.state_dict(), banks, drops, {})
    apply_drops(model.state_dict(), record)
    net, masks = masked_forward(model, banks)
    masks_from_record(record, masks)
    return net.eval()


def _kept(n: int, dropped: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(n, dtype=torch.bool)
    keep[dropped] = False
    return keep.nonzero().flatten()


def test_masked_convnet_equals_the_physically_smaller_one():
    """Sigmoid (f(0) = 0.5), conv biases and BatchNorm (BN(0) != 0): a masked filter must still add nothing."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = ConvNet(2, 5, [9, 9], width=6, depth=3, activation="sigmoid", batchnorm=True).eval()
    _randomise_bn(model, gen)
    drops = {
        "features.conv1": _filters(6, 0, 4),
        "features.conv2": _filters(6, 1, 2, 5),
        "features.conv3": _filters(6, 3),
    }
    x = torch.randn(4, 2, 9, 9, generator=gen)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    net = _masked(model, drops)

    # the physically smaller network, from the original weights: dropped rows and the matching input columns removed
    h, cols = x, torch.arange(2)
    for i in (1, 2, 3):
        keep = _kept(6, drops[f"features.conv{i}"])
        p = lambda name: original[f"features.{name}"]  # noqa: E731
        h = F.conv2d(h, p(f"conv{i}.weight")[keep][:, cols], p(f"conv{i}.bias")[keep], padding=1)
        h = F.batch_norm(
            h,
            p(f"bn{i}.running_mean")[keep],
            p(f"bn{i}.running_var")[keep],
            p(f"bn{i}.weight")[keep],
            p(f"bn{i}.bias")[keep],
            False,
            0.0,
            1e-5,
        )
        h = F.max_pool2d(torch.sigmoid(h), 2)
        cols = keep
    spatial = h.shape[2] * h.shape[3]
    fc_cols = (cols[:, None] * spatial + torch.arange(spatial)).flatten()
    expected = F.linear(h.flatten(1), original["classifier.weight"][:, fc_cols], original["classifier.bias"])
    with torch.no_grad():
        assert torch.allclose(net(x), expected, atol=1e-5)


def test_masked_resnet_equals_removed_filters_with_the_skip_path_kept():
    """The documented rule at a residual add: a dropped filter of the conv feeding the add adds
    nothing to it; the skip path still carries that channel. A dropped stem filter is gone from
    both paths (its activation is masked before the block reads it)."""
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = ResNet20(1, 3, [8, 8], width=4, blocks=1, activation="relu").eval()
    _randomise_bn(model, gen)
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    drops = {n: _filters(model.get_submodule(n).out_channels, i, 3 * i + 1) for i, n in enumerate(names)}
    x = torch.randn(3, 1, 8, 8, generator=gen)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    net = _masked(model, drops)

    def conv_bn(h, conv, bn, stride):
        """Only the kept filters are computed; the removed ones are absent, read as zero channels."""
        keep = _kept(original[f"{conv}.weight"].shape[0], drops[conv])
        y = F.conv2d(h, original[f"{conv}.weight"][keep], stride=stride, padding=1)
        y = F.batch_norm(
            y,
            original[f"{bn}.running_mean"][keep],
            original[f"{bn}.running_var"][keep],
            original[f"{bn}.weight"][keep],
            original[f"{bn}.bias"][keep],
            False,
            0.0,
            1e-5,
        )
        return y, keep

    def scatter(y, keep, channels):
        full = y.new_zeros(y.shape[0], channels, *y.shape[2:])
        full[:, keep] = y
        return full

    y, keep = conv_bn(x, "conv1", "bn1", 1)
    h = scatter(F.relu(y), keep, 4)
    for stage, stride in (("layer1.0", 1), ("layer2.0", 2), ("layer3.0", 2)):
        cout = original[f"{stage}.conv1.weight"].shape[0]
        y, keep = conv_bn(h, f"{stage}.conv1", f"{stage}.bn1", stride)
        mid = scatter(F.relu(y), keep, cout)
        y, keep = conv_bn(mid, f"{stage}.conv2", f"{stage}.bn2", 1)
        out = scatter(y, keep, cout)  # dropped filters add nothing to the sum
        short = h[:, :, ::stride, ::stride]
        pad = cout - h.shape[1]
        short = F.pad(short, [0, 0, 0, 0, pad // 2, pad - pad // 2])
        h = F.relu(out + short)
    expected = F.linear(h.mean((2, 3)), original["classifier.weight"], original["classifier.bias"])
    with torch.no_grad():
        assert torch.allclose(net(x), expected, atol=1e-5)


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
    training.set_seed(0)
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
