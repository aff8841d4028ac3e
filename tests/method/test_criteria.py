"""The pruning criteria as rankings (`orthocli.method.ranking`: l1, bn-scale, taylor, activation, or
a user's own): each orders a layer's filters by what it reads, the data-dependent ones from
statistics gathered in the last standard epoch before a drop (`filter_statistics`), bit-identical
on resume; each refuses, in one line, where it cannot apply."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from train_helpers import make_data, make_model, make_optimizer, run_epoch

from orthocli import RePr, plan_drops
from orthocli.config import ReprConfig
from orthocli.errors import OptionError, UsageError
from orthocli.method.drops import choose_drops
from orthocli.method.filter_statistics import FilterStatistics
from orthocli.method.ranking import BY_NAME, LayerFacts
from orthocli.network.models import ConvNet

pytestmark = pytest.mark.usefixtures("one_thread")


def facts(n: int, **given) -> LayerFacts:
    base = dict(name="conv", scores=torch.zeros(n), weight=torch.zeros(n, 1, 1, 1), generator=torch.Generator())
    return LayerFacts(**{**base, **given})


distinct = st.lists(st.floats(-100, 100, allow_nan=False), min_size=2, max_size=12, unique=True)


@given(norms=st.lists(st.integers(0, 10_000), min_size=2, max_size=12, unique=True))
def test_l1_drops_the_filters_of_smallest_weight_l1_norm_first(norms):
    # each filter's 4 weights share one magnitude, signs alternating: its L1 norm is 4x that
    w = torch.tensor(norms, dtype=torch.float64)[:, None] * torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    order = BY_NAME["l1"].order(facts(len(norms), weight=w.reshape(-1, 1, 2, 2)))
    assert order.tolist() == sorted(range(len(norms)), key=lambda i: norms[i])


@given(gammas=distinct)
def test_bn_scale_drops_the_smallest_absolute_scale_first(gammas):
    order = BY_NAME["bn-scale"].order(facts(len(gammas), bn_scale=torch.tensor(gammas, dtype=torch.float64)))
    assert order.tolist() == sorted(range(len(gammas)), key=lambda i: (abs(gammas[i]), i))


@pytest.mark.parametrize("name", ["taylor", "activation"])
@given(values=st.lists(st.floats(0, 100, allow_nan=False), min_size=2, max_size=12))
def test_the_gathered_criteria_drop_the_smallest_statistic_first_ties_by_index(name, values):
    order = BY_NAME[name].order(facts(len(values), stats={name: torch.tensor(values, dtype=torch.float64)}))
    assert order.tolist() == sorted(range(len(values)), key=lambda i: (values[i], i))


def test_each_criterion_without_what_it_reads_says_so_naming_the_layer():
    with pytest.raises(UsageError, match="no BatchNorm with a scale follows conv"):
        BY_NAME["bn-scale"].order(facts(3))
    with pytest.raises(UsageError, match="the taylor ranking reads statistics gathered from training batches"):
        BY_NAME["taylor"].order(facts(3))


def test_plan_drops_on_weights_alone_refuses_a_data_criterion():
    for name in ("taylor", "activation"):
        with pytest.raises(UsageError, match=f"the {name} ranking reads statistics .* a checkpoint without training"):
            plan_drops(make_model(), ratio=0.25, ranking=name)


def test_l1_and_bn_scale_plan_on_a_model_without_data():
    model = make_model()
    conv = model.features.conv2
    with torch.no_grad():
        conv.weight[3].mul_(1e-3)  # filter 3: the smallest L1 norm by far
        model.features.bn2.weight[5] = 1e-4  # filter 5: the smallest BatchNorm scale
    assert plan_drops(model, ratio=0.125, layers=["features.conv2"], ranking="l1").drops["features.conv2"].tolist() == [
        3
    ]
    plan = plan_drops(model, ratio=0.125, layers=["features.conv2"], ranking="bn-scale")
    assert plan.drops["features.conv2"].tolist() == [5]


def test_statistics_are_the_mean_abs_activation_and_activation_times_gradient():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3)
    model = torch.nn.Sequential(conv, torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x, y = torch.randn(5, 2, 6, 6), torch.tensor([0, 1, 0, 1, 1])
    model(x)
    stats = FilterStatistics(model, ["0"], {"activation", "taylor"})
    stats.active = True
    model.train()
    outputs = []

    def keep(module, args, out) -> None:
        out.retain_grad()
        outputs.append(out)

    conv.register_forward_hook(keep)
    F.cross_entropy(model(x), y).backward()
    out = outputs[0]
    want_act = out.detach().double().abs().mean(dim=(0, 2, 3))
    want_taylor = (out.detach().double() * out.grad.double()).abs().mean(dim=(0, 2, 3))
    got = stats.result()["0"]
    assert torch.allclose(got["activation"], want_act) and torch.allclose(got["taylor"], want_taylor)
    assert got["taylor"].dtype == torch.float64

    stats.active = False  # off: nothing more is added, evaluation passes never count
    F.cross_entropy(model(x), y).backward()
    assert torch.equal(stats.result()["0"]["activation"], got["activation"])


def _epochs(n, model, optimizer, ctrl, data):
    for _ in range(n):
        run_epoch(model, optimizer, data)
        ctrl.epoch_end()


def test_the_controller_gathers_only_in_the_last_standard_epoch_and_drops_the_smallest(monkeypatch):
    data = make_data()
    model = make_model()
    opt = make_optimizer(model)
    ctrl = RePr(model, opt, s1=3, s2=1, cycles=1, ratio=0.25, ranking="taylor")
    seen = []
    real = ctrl._choose

    def spy(cycle):
        result = ctrl._stats.result()
        seen.append({n: dict(v) for n, v in result.items()})
        return real(cycle)

    monkeypatch.setattr(ctrl, "_choose", spy)
    active = []
    for _ in range(3):
        active.append(ctrl._stats.active)
        run_epoch(model, opt, data)
        ctrl.epoch_end()
    assert active == [False, False, True]  # only epoch 3, the last standard one before the drop
    stats = seen[0]
    counts = ctrl._stats.counts  # cleared once the choice is made
    assert counts == {} and set(stats) == {"features.conv2", "features.conv3"}
    for name, dropped in ctrl.record["layers"].items():
        want = torch.argsort(stats[name]["taylor"], stable=True)[: len(dropped["dropped"])]
        assert sorted(torch.as_tensor(dropped["dropped"]).tolist()) == sorted(want.tolist())
    assert ctrl.record["rule"]["ranking"] == "taylor"


def test_gathered_statistics_resume_bit_identically_mid_epoch():
    options = dict(s1=2, s2=1, cycles=1, ratio=0.25, ranking="activation")
    data = make_data()
    x, y = data

    def half_epoch(model, opt, part):
        model.train()
        for i in range(0, len(x), 16)[part]:
            loss = F.cross_entropy(model(x[i : i + 16]), y[i : i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()

    full, full_opt = make_model(), None
    full_opt = make_optimizer(full)
    full_ctrl = RePr(full, full_opt, **options)
    _epochs(1, full, full_opt, full_ctrl, data)
    half_epoch(full, full_opt, slice(0, 1))
    half_epoch(full, full_opt, slice(1, None))
    want = {n: dict(v) for n, v in full_ctrl._stats.result().items()}
    full_ctrl.epoch_end()

    model = make_model()
    opt = make_optimizer(model)
    ctrl = RePr(model, opt, **options)
    _epochs(1, model, opt, ctrl, data)
    half_epoch(model, opt, slice(0, 1))  # interrupted in the gathering epoch
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "repr": ctrl.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert saved["repr"]["statistics"]["counts"]  # the half epoch's sums are in the state

    model = make_model(seed=5)
    opt = make_optimizer(model)
    ctrl = RePr(model, opt, **options)
    model.load_state_dict(saved["model"])
    opt.load_state_dict(saved["opt"])
    ctrl.load_state_dict(saved["repr"])
    half_epoch(model, opt, slice(1, None))
    got = ctrl._stats.result()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[n][k], want[n][k]) for n in want for k in want[n])  # bit for bit
    ctrl.epoch_end()
    assert ctrl.record["layers"].keys() == full_ctrl.record["layers"].keys()
    assert all(torch.equal(ctrl.record["layers"][n]["dropped"], full_ctrl.record["layers"][n]["dropped"]) for n in want)


def test_a_users_own_ranking_receives_every_layers_facts():
    seen = []

    class LargestFirst:
        name = "largest"
        needs = frozenset({"bn_scale"})

        def order(self, layer: LayerFacts) -> torch.Tensor:
            norms = layer.filter_rows().abs().sum(dim=1)
            seen.append((layer, norms))
            return torch.argsort(-norms, stable=True)

    data = make_data()
    model = make_model()
    opt = make_optimizer(model)
    ctrl = RePr(model, opt, s1=1, s2=1, cycles=1, ratio=0.25, ranking=LargestFirst())
    _epochs(1, model, opt, ctrl, data)
    assert [f.name for f, _ in seen] == ["features.conv2", "features.conv3"]
    assert all(f.bn_scale is not None and len(f.bn_scale) == 8 for f, _ in seen)
    assert ctrl.record["rule"]["ranking"] == "largest"
    norms = seen[0][1]  # as they were when the filters were chosen
    dropped = torch.as_tensor(ctrl.record["layers"]["features.conv2"]["dropped"]).tolist()
    assert sorted(dropped) == sorted(norms.argsort()[-2:].tolist())


def test_the_controller_refuses_bn_scale_without_a_batchnorm_and_data_criteria_without_a_standard_epoch():
    torch.manual_seed(0)
    bare = ConvNet(1, 4, [8, 8], width=8, depth=3, batchnorm=False)
    with pytest.raises(OptionError, match="none follows features.conv2"):
        RePr(bare, make_optimizer(bare), s1=1, s2=1, cycles=1, ratio=0.25, ranking="bn-scale")
    model = make_model()
    with pytest.raises(OptionError, match="the taylor ranking reads statistics .* s1 must be at least 1"):
        RePr(model, make_optimizer(model), s1=0, s2=1, cycles=1, ratio=0.25, ranking="taylor")


def test_choose_drops_gives_a_criterion_the_layers_it_was_given():
    scores = [torch.zeros(4)]
    stats = {"layer 0": {"activation": torch.tensor([3.0, 1.0, 2.0, 0.5], dtype=torch.float64)}}
    assert choose_drops(scores, ReprConfig(ratio=0.5, ranking="activation"), stats=stats)[0].tolist() == [1, 3]
