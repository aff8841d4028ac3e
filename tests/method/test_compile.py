"""RePr under torch.compile, in either order (wrap then compile, or compile then wrap): during a
sub-network phase the compiled model computes what the eager masked one does, outputs and
gradients; dropped filters stay bit-identical; a re-introduction takes effect at once; and a cycle
recompiles nothing (masks change values in place; see orthocli/masking.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.utils import counters
from train_helpers import frozen_values

from orthocli import RePr

pytestmark = pytest.mark.usefixtures("one_thread")


class Block(nn.Module):
    """conv -> [BN] -> activation, three times, then a Linear; or a residual block in the middle."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2, self.bn3 = nn.BatchNorm2d(8), nn.BatchNorm2d(8)
        self.act = nn.Sigmoid() if kind == "sigmoid" else nn.ReLU()
        self.act2 = nn.Sigmoid() if kind == "sigmoid" else nn.ReLU()
        self.act3 = nn.Sigmoid()
        self.fc = nn.Linear(8 * 16, 3)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        if self.kind == "relu":
            h = self.act2(self.conv2(h))
            h = F.relu(self.conv3(h))
        elif self.kind == "bn":
            h = self.act2(self.bn2(self.conv2(h)))
            h = F.relu(self.bn3(self.conv3(h)))
        elif self.kind == "sigmoid":
            h = self.act2(self.conv2(h))
            h = self.act3(self.conv3(h))
        else:  # residual: the skip carries conv1's channels past conv2 -> bn2 -> conv3 -> bn3
            h = F.relu(self.bn3(self.conv3(F.relu(self.bn2(self.conv2(h))))) + h)
        return self.fc(F.max_pool2d(h, 2).flatten(1))


def _data(n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def _grads(net, model, x, y):
    model.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["relu", "bn", "sigmoid", "residual"])
@pytest.mark.parametrize("order", ["repr-then-compile", "compile-then-repr"])
def test_a_compiled_sub_network_is_the_eager_one(kind, order):
    torch.manual_seed(0)
    model = Block(kind)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    x, y = _data()
    if order == "repr-then-compile":
        ctrl = RePr(model, optimizer, s1=1, s2=2, cycles=1, ratio=0.25, skip_first=False)
        net = torch.compile(model, backend="aot_eager")
    else:
        net = torch.compile(model, backend="aot_eager")
        net(x)  # compiled once before the controller exists
        ctrl = RePr(net, optimizer, s1=1, s2=2, cycles=1, ratio=0.25, skip_first=False)

    def epoch():
        for i in range(0, len(x), 4):
            optimizer.zero_grad()
            F.cross_entropy(net(x[i : i + 4]), y[i : i + 4]).backward()
            optimizer.step()

    epoch()
    _grads(net, model, x, y)  # every shape and mode the test runs, compiled once before any drop
    model.eval()
    with torch.no_grad():
        net(x)
    model.train()
    counters.clear()
    ctrl.epoch_end()  # S1 ended: the drop is made now
    record = ctrl.record
    assert record is not None and set(record["layers"]) >= {"conv2"}
    frozen = frozen_values(model, record)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-6)  # outputs: compiled == eager, masked
    model.train()
    compiled, eager = _grads(net, model, x, y), _grads(model, model, x, y)
    assert compiled.keys() == eager.keys()
    assert all(torch.allclose(compiled[k], eager[k], atol=1e-6) for k in eager)
    epoch()
    assert all(torch.equal(frozen_values(model, record)[k], v) for k, v in frozen.items())
    assert ctrl.epoch_end() is None
    epoch()
    assert all(torch.equal(frozen_values(model, record)[k], v) for k, v in frozen.items())
    done = ctrl.epoch_end()  # the last S2 epoch ended: re-introduced now
    assert done is not None and done.dropped and done.steps == 6
    model.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-6)  # at once, in the compiled model too
        layer = record["layers"]["conv2"]
        assert model.conv2.weight[layer["dropped"]].abs().sum() > 0  # new values, not the frozen zeros
    assert counters["stats"]["unique_graphs"] == 0  # a drop and a re-introduction recompile nothing


def test_the_default_inductor_backend_compiles_the_masks_in():
    """torch.compile's default backend (inductor, which generates C++ on the CPU), on the sigmoid
    network whose masks are hooks: the sub-network it runs is the eager one."""
    torch.manual_seed(0)
    model = Block("sigmoid")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    ctrl = RePr(model, optimizer, s1=0, s2=1, cycles=1, ratio=0.25)
    net = torch.compile(model)
    x, y = _data()
    F.cross_entropy(net(x), y).backward()  # s1 = 0: the first training forward makes the drop
    optimizer.step()
    assert ctrl.record is not None
    model.eval()
    with torch.no_grad():
        assert torch.allclose(net(x), model(x), atol=1e-5)


def test_train_compile_trains_the_method_and_the_control_as_eager_does(train_json, tmp_path):
    """`orthocli train --compile` (inductor): the same drops, and the same weights within float
    noise, as the eager run; the state dict keeps the model's own keys."""
    import orthocli.checkpoints.checkpoint as ckpt_io

    eager = train_json("--baseline", "--threads", "1", "-o", tmp_path / "e.pt")
    compiled = train_json("--baseline", "--threads", "1", "--compile", "-o", tmp_path / "c.pt")
    assert compiled["runtime"]["compile"] is True and eager["runtime"]["compile"] is False
    assert [c["dropped"] for c in compiled["cycles"]] == [c["dropped"] for c in eager["cycles"]]
    for name in ("e.pt", "e.baseline.pt"):
        a = ckpt_io.load(tmp_path / name).state_dict
        b = ckpt_io.load(tmp_path / name.replace("e", "c", 1)).state_dict
        assert a.keys() == b.keys() and not any(k.startswith("_orig_mod") for k in b)
        assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4) for k in a), name
