"""The sub-network while it trains: dropped filters frozen bit for bit, and masks equal to
physically removed filters (plain conv nets and ResNets)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from train_helpers import clone_state, convnet

import orthocli.method.controller as controller
from orthocli.api import drop, plan_drops
from orthocli.config import TrainConfig
from orthocli.method.masking import masks_from_record
from orthocli.method.subnet import apply_drops, make_record
from orthocli.network.banks import banks_from_model, masked_forward
from orthocli.network.models import ConvNet, ResNet20
from orthocli.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


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
    real_drop = controller.apply_drops
    model = convnet(digits, batchnorm=True)

    def spy(state, record):
        real_drop(state, record)
        seen.update(model=model, record=record, frozen=_dropped_values(model, record), kept=clone_state(model))

    checks = []

    def check(e=None):
        if e is None or (e["kind"] == "epoch" and e["phase"] == "subnet" and e["epoch"] < 4):
            now = _dropped_values(seen["model"], seen["record"])
            checks.append(all(torch.equal(now[k], seen["frozen"][k]) for k in now))

    real_reint = controller.reintroduce
    monkeypatch.setattr(controller, "apply_drops", spy)
    monkeypatch.setattr(controller, "reintroduce", lambda *a: check() or real_reint(*a))  # after the last S2 epoch

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
        ratio=0.1,
    )
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
    record = drop(model, plan_drops(model, ratio=cfg.ratio))
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
