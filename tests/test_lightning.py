"""orthocli.ReprCallback in a real lightning.Trainer on the CPU: the same drops and
re-initialisations as the plain API for the same seed and data order, and a run resumed from a
Lightning checkpoint continues in the right phase with the right masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from orthocli import RePr, ReprCallback  # noqa: E402
from orthocli.network.models import ConvNet  # noqa: E402

OPTIONS = dict(s1=1, s2=2, cycles=1, ratio=0.4, seed=3)
EPOCHS = 4


pytestmark = pytest.mark.usefixtures("one_thread")


def make_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return ConvNet(1, 4, [8, 8], width=8, depth=3, batchnorm=True)


def make_data() -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 4, (48,), generator=g))


def make_optimizer(net: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)


class Lit(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = make_net()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return make_optimizer(self.net)


def trainer(max_epochs: int, callbacks: list, tmp_path, **options) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **{"enable_checkpointing": False, **options},
    )


def loader() -> DataLoader:
    return DataLoader(make_data(), batch_size=16, shuffle=False)


class Probe(pl.Callback):
    """Where the RePr callback stands at the start of every training epoch."""

    def __init__(self, cb: ReprCallback) -> None:
        self.cb, self.seen = cb, []

    def on_train_epoch_start(self, trainer, pl_module):
        ctrl = self.cb.repr
        self.seen.append((trainer.current_epoch, ctrl.phase, {n: m.tolist() for n, m in ctrl.masks().items()}))


def test_lightning_makes_the_plain_apis_drops_and_reinitialisations(tmp_path):
    cb = ReprCallback(module="net", **OPTIONS)
    lit = Lit()
    trainer(EPOCHS, [cb], tmp_path, num_sanity_val_steps=2).fit(lit, loader(), loader())

    net = make_net()
    optimizer = make_optimizer(net)
    ctrl = RePr(net, optimizer, **OPTIONS)
    for _ in range(EPOCHS):
        net.train()
        for x, y in loader():
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        ctrl.epoch_end()
    assert [c.dropped for c in cb.repr.cycles] == [c.dropped for c in ctrl.cycles] and ctrl.cycles[0].dropped
    assert cb.repr.cycles[0].reintroduced == ctrl.cycles[0].reintroduced
    assert cb.repr.epoch == EPOCHS and cb.repr.step == EPOCHS * 3  # the sanity validation counted nothing
    for k, v in net.state_dict().items():
        assert torch.equal(lit.net.state_dict()[k], v), k


def test_a_random_ranking_control_matched_to_the_method_run(tmp_path):
    """The ranking question in Lightning: a `ranking="random"` callback given the method callback's
    counts drops as many filters per layer, other ones."""
    method = ReprCallback(module="net", **OPTIONS)
    method_probe = Probe(method)
    trainer(EPOCHS, [method, method_probe], tmp_path / "m").fit(Lit(), loader())
    control = ReprCallback(module="net", **{**OPTIONS, "ratio": None}, ranking="random", counts=method.repr.counts)
    control_probe = Probe(control)
    trainer(EPOCHS, [control, control_probe], tmp_path / "r").fit(Lit(), loader())
    assert control.repr.counts == method.repr.counts and sum(method.repr.counts[1].values()) > 0
    # the second epoch is the sub-network's: as many filters masked per layer, other ones
    (_, phase, method_masks), (_, _, control_masks) = method_probe.seen[2], control_probe.seen[2]
    assert phase == "subnet"
    assert {n: m.count(False) for n, m in method_masks.items()} == {n: m.count(False) for n, m in control_masks.items()}
    assert method_masks != control_masks


@pytest.mark.parametrize(
    "stop_at,validate",
    [(2, False), (1, False), (2, True)],  # inside the sub-network phase; at the end of S1; saved at validation end
)
def test_resumed_from_a_lightning_checkpoint_continues_in_phase_with_the_masks(tmp_path, stop_at, validate):
    val = [loader()] if validate else []
    full_cb = ReprCallback(module="net", **OPTIONS)
    full = Lit()
    full_probe = Probe(full_cb)
    trainer(EPOCHS, [full_cb, full_probe], tmp_path / "full").fit(full, loader(), *val)

    first_cb = ReprCallback(module="net", **OPTIONS)
    # with validation, ModelCheckpoint saves at validation end: before this epoch's epoch_end
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(stop_at, [first_cb, ckpt], tmp_path / "a", enable_checkpointing=True).fit(Lit(), loader(), *val)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert any(v.get("format") == "orthocli-repr" for v in saved["callbacks"].values())

    cb = ReprCallback(module="net", **OPTIONS)
    probe = Probe(cb)
    resumed = Lit()
    resumed.net.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
    trainer(EPOCHS, [cb, probe], tmp_path / "b").fit(resumed, loader(), *val, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert probe.seen == full_probe.seen[stop_at:]  # the same phase and masks at every epoch from the resume on
    if stop_at == 2:
        assert probe.seen[0][1] == "subnet" and any(not all(m) for m in probe.seen[0][2].values())
    for k, v in full.net.state_dict().items():
        assert torch.equal(resumed.net.state_dict()[k], v), k
    assert [c.dropped for c in cb.repr.cycles] == [c.dropped for c in full_cb.repr.cycles]


def test_a_second_optimizer_is_refused(tmp_path):
    class Two(Lit):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False  # Lightning's rule for more than one optimizer

        def configure_optimizers(self):
            return [make_optimizer(self.net), make_optimizer(self.net)]

        def training_step(self, batch, batch_idx):
            return None

    from orthocli.errors import UsageError

    with pytest.raises(UsageError, match="exactly one optimizer"):
        trainer(1, [ReprCallback(module="net", **OPTIONS)], tmp_path).fit(Two(), loader())


def test_a_checkpoint_written_before_the_callbacks_epoch_end_catches_up(tmp_path):
    """ModelCheckpoint may save at validation end, before this callback's epoch_end of that epoch:
    the resumed run makes that epoch_end first, so it continues as the uninterrupted run."""
    full = Lit()
    trainer(EPOCHS, [ReprCallback(module="net", **OPTIONS)], tmp_path / "full").fit(full, loader())

    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = ReprCallback(module="net", **OPTIONS)
    trainer(2, [first, ckpt], tmp_path / "a", enable_checkpointing=True).fit(Lit(), loader())
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    key = next(k for k, v in saved["callbacks"].items() if v.get("format") == "orthocli-repr")
    state = saved["callbacks"][key]
    assert state["epoch"] == 2 and state["record"] is not None  # mid-S2: no boundary at this epoch's end
    saved["callbacks"][key] = {**state, "epoch": 1}  # as written before the callback's epoch_end
    torch.save(saved, tmp_path / "early.ckpt")

    cb = ReprCallback(module="net", **OPTIONS)
    resumed = Lit()
    trainer(EPOCHS, [cb], tmp_path / "b").fit(resumed, loader(), ckpt_path=tmp_path / "early.ckpt")
    assert cb.repr.epoch == EPOCHS and [c.cycle for c in cb.repr.cycles] == [1]
    for k, v in full.net.state_dict().items():
        assert torch.equal(resumed.net.state_dict()[k], v), k


def test_a_compiled_network_and_the_controller_it_exposes(tmp_path):
    """`ReprCallback(module="net")` on a torch.compile'd network trains what the eager one does;
    `controller` is the RePr it ran, with its cycles."""
    eager_cb = ReprCallback(module="net", **OPTIONS)
    eager = Lit()
    trainer(EPOCHS, [eager_cb], tmp_path / "eager").fit(eager, loader())

    cb = ReprCallback(module="net", **OPTIONS)
    assert cb.controller is None  # before fit
    compiled = Lit()
    compiled.net = torch.compile(compiled.net, backend="aot_eager")
    trainer(EPOCHS, [cb], tmp_path / "compiled").fit(compiled, loader())
    assert cb.controller is cb.repr and [c.cycle for c in cb.controller.cycles] == [1]
    assert cb.controller.cycles[0].dropped == eager_cb.controller.cycles[0].dropped
    assert cb.controller.cycles[0].steps == 2 * 3 and cb.controller.cycles[0].trained  # S2: 2 epochs of 3 steps
    reference = eager.net.state_dict()
    for k, v in compiled.net._orig_mod.state_dict().items():
        assert torch.allclose(v, reference[k], atol=1e-5), k


def test_the_depthwise_follower_is_dropped_in_a_lightning_fit(tmp_path):
    """pointwise -> BN -> ReLU -> depthwise -> BN -> ReLU -> pointwise (tests/graph_models.py): while
    pw1's channels are dropped, the depthwise conv's filter, bias and BatchNorm for them stay zero."""
    from graph_models import Separable

    class Sep(Lit):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = Separable(1, 4, width=8)

    class During(pl.Callback):
        def __init__(self, cb: ReprCallback) -> None:
            self.cb, self.seen = cb, []

        def on_train_epoch_end(self, trainer, pl_module):
            record = self.cb.controller.record
            if record is not None and "pw1" in record["layers"]:
                rows = record["layers"]["pw1"]["dropped"]
                net = pl_module.net
                self.seen.append(
                    [int(torch.count_nonzero(t[rows])) for t in (net.dw.weight, net.dw.bias, net.bn2.weight)]
                )

    cb = ReprCallback(module="net", s1=1, s2=2, cycles=1, ratio=0.25, layers=["pw1"])
    during = During(cb)
    trainer(EPOCHS, [during, cb], tmp_path).fit(Sep(), loader())
    assert during.seen and all(counts == [0, 0, 0] for counts in during.seen)
    assert cb.controller.cycles[0].reintroduced["pw1"]["fan_out"] == "zeroed"
