"""Training with the RePr schedule (the method's steps 3 "drop", 4 "re-introduce" and 5 "output";
docs/method.md): `TrainConfig`, `phases()`, `train()`, `evaluate()`.

The schedule (figure 1 of the paper), counted in epochs:

    cycle 1: S1 standard epochs, then S2 sub-network epochs; cycle 2: S1, S2; ... cycle N: S1, S2;
    then standard training until validation accuracy stops improving (`patience` epochs), capped
    by `max_epochs` (every epoch counted), keeping the best weights of that last phase (highest
    validation accuracy; equal accuracy, lower validation loss).

The method itself is the public controller `controller.RePr`, which this loop drives as a user's
loop would (`prepare()` before a cycle's first sub-network epoch, `epoch_end()` after every
epoch): at the first sub-network epoch of a cycle the current conv filters are scored and the
most redundant ones dropped, with the same functions as `orthocli prune`; the sub-network trains
with the dropped filters masked where their channels are handed on (forward hooks: a dropped
filter adds nothing to a residual sum while the skip path still carries that channel) and kept
bit-identical by the optimizer's step hooks. After its last sub-network epoch they are
re-introduced from the null space (as `orthocli reinit`, with a generator seeded by (seed,
cycle)) and their optimizer state is zeroed. Standard epochs train the plain model: no hooks, no
overhead. A pruned checkpoint's sub-network trains under a `method.subnet.SubNetwork`.

Reproducible: the data order of every epoch comes from a generator seeded by (seed, epoch), the
learning rate is a pure function of the epoch, and the state file (`train(state_path=...)`) holds
model, optimizer, global RNG, best weights so far, history, and the active drop record, so a
resumed run continues exactly (bit for bit with `deterministic=True`).

No printing, no paths other than the optional state file: progress goes to `callback(event)`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli.config import Phase, TrainConfig
from orthocli.data import Arrays, DataSplits
from orthocli.data.streaming import Streamed, distributed_batches, eval_batches, head, repeat_passes, train_batches
from orthocli.errors import CheckpointError, DataError, Diverged, UsageError, first_line
from orthocli.method.controller import RePr
from orthocli.method.redundancy import live_means, watched_layers
from orthocli.method.subnet import SubNetwork
from orthocli.seeding import DATA_ORDER, MORE_PASSES, sub_seed
from orthocli.training.runtime import Runtime, broadcast_tensors, sum_gradients, sum_over_ranks
from orthocli.trees import map_tree

STATE_KIND = "orthocli-train-state"
STATE_VERSION = 2  # 2: the RePr controller's state in the loop state (`LoopState.method`)


# ---------------------------------------------------------------------------------------------
# Small pure helpers


def phases(cfg: TrainConfig, *, subnet_only: bool = False) -> list[Phase]:
    """The phase of each epoch (0-based index), up to the cap (`ReprConfig.phase_at`, the schedule
    the controller follows); the final phase may stop early. `subnet_only`: training a pruned
    checkpoint's sub-network, S2 epochs and nothing else."""
    if subnet_only:
        return [Phase("subnet", None) for _ in range(cfg.s2)]
    return [cfg.phase_at(epoch) for epoch in range(cfg.total_epochs)]


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """Learning rate of 0-based `epoch`, over the whole budget (`total_epochs`)."""
    total, peak = max(cfg.total_epochs, 1), cfg.peak_lr
    if cfg.lr_schedule == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * epoch / total))
    if cfg.lr_schedule == "step":
        return peak * 0.1 ** ((epoch >= total // 2) + (epoch >= (3 * total) // 4))
    return peak


def batches(
    n: int, batch_size: int, seed: int, epoch: int, world_size: int = 1, min_steps: int = 0
) -> list[torch.Tensor]:
    """Shuffled mini-batch indices of one epoch, from a generator seeded by (seed, epoch), so a
    resumed run sees the same order. A last batch of one sample (BatchNorm), or of fewer samples
    than processes (each rank needs one), joins the one before."""

    def one_pass(p: int) -> list[torch.Tensor]:
        stream_seed = sub_seed(seed, DATA_ORDER, epoch) if p == 0 else sub_seed(seed, MORE_PASSES, epoch * 100_003 + p)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(stream_seed))
        one = list(order.split(batch_size))
        if len(one) > 1 and len(one[-1]) < max(2, world_size):
            one[-2:] = [torch.cat(one[-2:])]
        return one

    return repeat_passes(one_pass, min_steps)


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "mse":  # the patent's squared error on the outputs (softmax) against one-hot targets

        def squared_error(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            t = F.one_hot(y, logits.shape[1]).to(logits.dtype)
            return 0.5 * (logits.softmax(1) - t).pow(2).sum(1).mean()

        return squared_error
    return F.cross_entropy


def _channels_hint(model: nn.Module, channels: int) -> str:
    """Where the model's first conv reads another number of channels than the data has: how to
    make them agree (a builder is given `in_channels` only where it names that parameter)."""
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    if first is None or first.in_channels == channels:
        return ""
    return (
        f"; the model's first conv reads {first.in_channels} channels and the data has {channels}: give your"
        f" builder its argument for the input channels (--arch-args in_chans={channels} for timm; a builder"
        " with an in_channels parameter gets it unasked), or wrap the builder to replace that conv"
        " (docs/commands.md, 'Models from torchvision and timm')"
    )


def check_fits(model: nn.Module, data: DataSplits) -> None:
    """The model takes the data's samples and has an output per class; else DataError."""
    x = head(data.train, 2).to(_device_of(model))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        shape = "x".join(map(str, x.shape[1:]))
        raise DataError(
            f"the data does not fit the model: samples of shape {shape} (C x spatial) fail in its forward pass"
            f" ({first_line(e)}){_channels_hint(model, x.shape[1])}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise DataError(
            f"the model's output has shape {tuple(getattr(out, 'shape', ()))}; expected (batch, classes) logits"
        )
    if out.shape[1] < data.num_classes:
        raise DataError(
            f"labels out of range: the data has {data.num_classes} classes (labels 0..{data.num_classes - 1})"
            f" but the model has {out.shape[1]} outputs"
        )


def evaluate(
    model: nn.Module, arrays: Arrays | Streamed | None, loss: str = "ce", batch_size: int = 1024
) -> tuple[float | None, float | None]:
    """(mean loss, accuracy) of `model` on `arrays` in eval mode; (None, None) for no data. A
    streamed split is read in order onto the model's device."""
    if arrays is None or len(arrays) == 0:
        return None, None
    model.eval()
    criterion, total, correct = loss_fn(loss), 0.0, 0
    if isinstance(arrays, Streamed):
        pairs = eval_batches(arrays, _device_of(model))
    else:
        pairs = (
            (arrays.x[i : i + batch_size], arrays.y[i : i + batch_size]) for i in range(0, len(arrays), batch_size)
        )
    with torch.no_grad():
        for x, y in pairs:
            logits = model(x).float()
            total += float(criterion(logits, y)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
    return total / len(arrays), correct / len(arrays)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.peak_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    model: nn.Module  # the trained model, best weights of the final phase loaded
    # one entry per epoch: epoch, phase, cycle, lr, loss, train_acc, val_loss, val_acc, seconds, layer_means
    # (each candidate layer's mean score over its live filters at the end of the epoch)
    history: list[dict]
    # one entry per cycle: val_before_drop, val_after_subnet, val_after_reinit, dropped, reintroduced, fallbacks
    cycles: list[dict]
    val_accuracy: float | None
    test_accuracy: float | None
    best_epoch: int | None  # epochs done when the kept weights were saved (None: the last weights)
    stopped_early: bool
    record: dict | None = None  # the drop record, when a pruned checkpoint's sub-network was trained

    @property
    def epochs(self) -> int:
        return len(self.history)

    def summary(self) -> dict:
        doc = {"val_accuracy": self.val_accuracy}
        if self.test_accuracy is not None:
            doc["test_accuracy"] = self.test_accuracy
        doc.update(epochs=self.epochs, best_epoch=self.best_epoch, stopped_early=self.stopped_early)
        doc["cycles"] = [{k: v for k, v in c.items() if k != "reintroduced"} for c in self.cycles]
        return doc


@dataclass
class Best:
    """The best weights of the final phase so far."""

    val: float  # their validation accuracy
    epoch: int  # epochs done when they were saved
    state_dict: dict[str, torch.Tensor]
    val_loss: float | None = None  # their validation loss: breaks ties of accuracy (None in older state files)

    def beaten_by(self, val_acc: float, val_loss: float) -> bool:
        """Higher accuracy wins; equal accuracy, lower loss. Without the tie-break a small or saturated
        validation set (every epoch at 100%, or 25 samples) keeps the weights entering the final
        phase, which for RePr is the moment of the last re-introduction: its new filters unused."""
        if val_acc != self.val:
            return val_acc > self.val
        return self.val_loss is not None and val_loss < self.val_loss


@dataclass
class LoopState:
    """Everything the loop carries from epoch to epoch besides model and optimizer (and saves in the
    state file, so a resumed run continues exactly)."""

    epoch: int = 0  # epochs done
    history: list[dict] = field(default_factory=list)  # one entry per epoch done (TrainResult.history)
    cycles: list[dict] = field(default_factory=list)  # one entry per finished cycle (TrainResult.cycles)
    pending: dict | None = None  # the running cycle's entry, filled in from its drop to its re-introduction
    record: dict | None = None  # a pruned checkpoint's drop record, when its sub-network trains
    method: dict | None = None  # the RePr controller's state (`RePr.state_dict()`), when the method runs
    best: Best | None = None  # best weights of the final phase so far
    bad: int = 0  # final-phase epochs since the last better val accuracy
    stopped_early: bool = False
    finished: bool = False

    def to_dict(self) -> dict:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}  # shallow: the tensors are not copied
        doc["best"] = None if self.best is None else {f.name: getattr(self.best, f.name) for f in fields(Best)}
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> LoopState:
        names = {f.name for f in fields(cls)}
        if set(doc) != names:
            raise ValueError(f"its progress has keys {sorted(doc)}; expected {sorted(names)}")
        best = doc["best"]
        return cls(**{**doc, "best": None if best is None else Best(**best)})


def train(
    model: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    record: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    state_every: float = 0.0,
    meta: dict | None = None,
    runtime: Runtime | None = None,
    counts: dict[int, dict[str, int]] | None = None,
) -> TrainResult:
    """Train `model` in place with the RePr schedule (or, with `record` from a pruned checkpoint,
    its sub-network for `cfg.s2` epochs). `counts` (cycle -> layer -> filters): drop exactly these
    instead of the rule's (`RePr(counts=...)`: a random-ranking control matched to a method run). Calls `callback` with {"kind": "epoch", ...} after every
    epoch and {"kind": "cycle", ..., "state_dict": ...} after every re-introduction. With
    `state_path` the full training state is written there (atomically) at the end of an epoch,
    at most every `state_every` seconds (0: every epoch) and always after the last one;
    `resume=True` continues from it, exactly. `meta` (plain values) is stored with it, as the
    caller's record of the run (see `read_state`).

    `runtime` (`runtime.setup()`) says where to train: the device, mixed precision, and under
    torchrun the process group. Each rank trains on its share of every batch; drop decisions and
    re-initialised values come from rank 0; only rank 0 calls `callback` and writes the state.
    Default: the CPU, fp32, one process."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(cfg.deterministic or previous)
    try:
        rt = runtime or Runtime(torch.device("cpu"))
        return _train(
            model,
            data,
            cfg,
            given_record=record,
            callback=(callback if rt.is_main else None) or (lambda event: None),
            state_path=state_path,
            write_state_to=state_path if rt.is_main else None,
            resume=resume,
            state_every=state_every,
            meta=meta or {},
            rt=rt,
            counts=counts,
        )
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(
    model: nn.Module,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    given_record: dict | None,
    callback: Callable[[dict], None],
    state_path: str | Path | None,
    write_state_to: str | Path | None,
    resume: bool,
    state_every: float,
    meta: dict,
    rt: Runtime,
    counts: dict[int, dict[str, int]] | None,
) -> TrainResult:
    model.to(rt.device)
    data = _on_device(data, rt.device)
    check_fits(model, data)
    subnet_only = given_record is not None
    epoch_phases = phases(cfg, subnet_only=subnet_only)
    optimizer = _optimizer(model, cfg)
    # the method, as a user's loop runs it (checks the drop options before any training)
    method = (
        RePr(model, optimizer, cfg, counts=counts) if cfg.cycles > 0 and not cfg.baseline and not subnet_only else None
    )
    # the layers the method may drop from, whose mean score each epoch records (every arm, so they compare)
    watched = watched_layers(model, cfg, method.graph if method is not None else None)
    criterion, scaler = loss_fn(cfg.loss), rt.grad_scaler()
    if rt.distributed:  # every rank starts from rank 0's weights
        broadcast_tensors(rt, list(model.state_dict().values()))
    s = _load_state(state_path, model, optimizer, cfg) if resume else LoopState(record=given_record)
    if method is not None and s.method is not None:
        method.load_state_dict(s.method)
    if s.record is not None:  # a pruned checkpoint: its sub-network, masked and frozen, to the end
        SubNetwork(model, optimizer, s.record)
    net = rt.compiled(model)  # after the method's hooks: compiled with them (masking.py)

    epoch, saved_at = s.epoch, time.perf_counter()
    while not s.finished and epoch < len(epoch_phases):
        phase = epoch_phases[epoch]
        if phase.name == "final" and s.best is None and data.val is not None and len(data.val):
            # the weights entering the final phase (after the last re-init) are a candidate too
            entering_loss, entering_acc = _val_now(s, net, data, cfg)
            s.best = _snapshot(model, entering_acc, epoch, entering_loss)
        if phase.drop_before:  # score, drop, and train the sub-network from here
            s.pending = {"cycle": phase.cycle, "val_before_drop": _val_now(s, net, data, cfg)[1]}
            if method is not None:
                method.prepare()

        # one epoch: lr -> forward/backward -> step (the controller's hooks freeze) -> eval
        t0, lr = time.perf_counter(), lr_at(epoch, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, train_acc = _train_epoch(net, optimizer, criterion, data.train, cfg, epoch, rt, scaler)
        # the control trains through the sub-network epochs like any other: it shows them as standard
        shown = "standard" if cfg.baseline and phase.name == "subnet" else phase.name
        if not math.isfinite(loss):
            raise Diverged(epoch + 1, shown, phase.cycle)
        if rt.distributed:  # BatchNorm statistics: each rank saw its own share; take rank 0's
            broadcast_tensors(rt, list(model.buffers()))
        val_loss, val_acc = evaluate(net, data.val, cfg.loss)
        means = live_means(watched)  # the network this epoch trained: before a drop or re-introduction
        done = method.epoch_end() if method is not None else None  # drops after S1, re-introduces after S2
        if phase.reinit_after:
            s.pending["val_after_subnet"] = val_acc
            if done is not None and done.dropped:
                s.pending.update(dropped=done.dropped, reintroduced=done.reintroduced, fallbacks=done.fallbacks)
            s.pending["val_after_reinit"] = evaluate(net, data.val, cfg.loss)[1]
            s.cycles.append(_cycle_entry(s.pending))
            s.pending = None

        # log, keep the best weights of the final phase, stop check, save the state
        entry = {
            "epoch": epoch + 1,
            "phase": shown,
            "cycle": phase.cycle,
            "lr": lr,
            "loss": loss,
            "train_acc": train_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "seconds": time.perf_counter() - t0,
            "layer_means": means,
        }
        s.history.append(entry)
        if phase.name == "final" and val_acc is not None:
            if s.best.beaten_by(val_acc, val_loss):
                s.best, s.bad = _snapshot(model, val_acc, epoch + 1, val_loss), 0
            else:
                s.bad += 1
                s.stopped_early = s.bad >= cfg.patience
        epoch = s.epoch = epoch + 1
        s.finished = s.stopped_early or epoch >= len(epoch_phases)
        if s.finished and s.best is not None:
            model.load_state_dict(s.best.state_dict)
        if method is not None:
            s.method = method.state_dict()
        if write_state_to is not None and (s.finished or time.perf_counter() - saved_at >= state_every):
            _save_state(write_state_to, model, optimizer, cfg, s, meta)
            saved_at = time.perf_counter()
        callback({"kind": "epoch", "total": len(epoch_phases), **entry})
        if phase.reinit_after:
            callback({"kind": "cycle", **s.cycles[-1], "state_dict": model.state_dict()})

    return TrainResult(
        model=model,
        history=s.history,
        cycles=s.cycles,
        val_accuracy=evaluate(net, data.val, cfg.loss)[1],
        test_accuracy=evaluate(net, data.test, cfg.loss)[1],
        best_epoch=s.best.epoch if s.best else None,
        stopped_early=s.stopped_early,
        record=s.record,
    )


def _epoch_batches(train_set: Arrays | Streamed, cfg: TrainConfig, epoch: int, rt: Runtime):
    """(x, y, share) of every step of one epoch, share being this rank's part of the step's samples.

    In memory, under torchrun each rank takes every world_size-th sample of each (global) batch. A
    streamed split is read by a DataLoader: in one process in the order `batches` gives (the order
    the in-memory data has), under torchrun from this rank's `DistributedSampler` shard."""
    if isinstance(train_set, Streamed):
        if rt.distributed:
            lists = distributed_batches(
                len(train_set),
                cfg.batch_size,
                sub_seed(cfg.seed, DATA_ORDER, 0),
                epoch,
                rt.rank,
                rt.world_size,
                cfg.min_steps,
            )
        else:
            lists = [b.tolist() for b in batches(len(train_set), cfg.batch_size, cfg.seed, epoch, 1, cfg.min_steps)]
        for x, y in train_batches(train_set, lists, epoch, rt.device):
            yield x, y, 1 / rt.world_size
        return
    for idx in batches(len(train_set), cfg.batch_size, cfg.seed, epoch, rt.world_size, cfg.min_steps):
        share = idx[rt.rank :: rt.world_size].to(rt.device)
        yield train_set.x[share], train_set.y[share], len(share) / len(idx)


def _train_epoch(
    net, optimizer, criterion, train_set: Arrays | Streamed, cfg: TrainConfig, epoch: int, rt: Runtime, scaler=None
) -> tuple[float, float]:
    """One pass over the training data; (mean loss, accuracy) as seen during the pass.

    Under torchrun each rank's loss is weighted by its share of the step's samples and the
    gradients summed over ranks, so an update equals the one a single process makes on the whole
    batch."""
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), device=rt.device)
    correct = torch.zeros((), dtype=torch.long, device=rt.device)
    seen = torch.zeros((), dtype=torch.long, device=rt.device)
    for x, y, share in _epoch_batches(train_set, cfg, epoch, rt):
        with rt.autocast():
            logits = net(x)
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        weighted = loss * share if rt.distributed else loss
        (scaler.scale(weighted) if scaler is not None else weighted).backward()
        if rt.distributed:
            sum_gradients(rt, params)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
    if rt.distributed:  # (a DistributedSampler repeats a few samples to give every rank as many)
        loss_sum, correct, seen = sum_over_ranks(rt, loss_sum), sum_over_ranks(rt, correct), sum_over_ranks(rt, seen)
    return float(loss_sum) / int(seen), int(correct) / int(seen)


def _cycle_entry(pending: dict) -> dict:
    keys = ("cycle", "val_before_drop", "val_after_subnet", "val_after_reinit", "dropped", "fallbacks", "reintroduced")
    return {k: pending.get(k, {}) for k in keys}


def _val_now(s: LoopState, model: nn.Module, data: DataSplits, cfg: TrainConfig) -> tuple:
    """(val loss, val accuracy) of the plain model's current weights: the last epoch's when it
    evaluated these weights (a standard epoch), else evaluated now (after a sub-network epoch or a
    re-introduction)."""
    if s.history and s.history[-1]["phase"] != "subnet":
        return s.history[-1]["val_loss"], s.history[-1]["val_acc"]
    return evaluate(model, data.val, cfg.loss)


def _on_device(data: DataSplits, device: torch.device) -> DataSplits:
    """The in-memory splits on the training device (moved once: they fit in memory); streamed
    splits move batch by batch."""
    if device.type == "cpu":
        return data
    move = lambda a: a if not isinstance(a, Arrays) else Arrays(a.x.to(device), a.y.to(device))  # noqa: E731
    return dataclasses.replace(data, train=move(data.train), val=move(data.val), test=move(data.test))


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    return torch.device("cpu")


def _snapshot(model: nn.Module, val: float, epoch: int, val_loss: float) -> Best:
    return Best(val, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}, val_loss)


# ---------------------------------------------------------------------------------------------
# The state file: everything needed to continue a run exactly


@dataclass
class SavedState:
    """A state file, read back (`read_state`)."""

    config: TrainConfig  # the run's configuration: a resumed run must have the same
    meta: dict  # the caller's record of the run, as it passed it to `train(meta=...)`
    loop: LoopState  # progress
    state_dict: dict[str, torch.Tensor]  # the model
    optimizer: dict  # the optimizer's state dict
    rng: torch.Tensor  # torch's global RNG state


def _save_state(path, model, optimizer, cfg: TrainConfig, s: LoopState, meta: dict) -> None:
    payload = ckpt_io.make_payload(
        {k: v.detach() for k, v in model.state_dict().items()},
        kind=STATE_KIND,
        state_version=STATE_VERSION,
        config=cfg.to_dict(),
        meta=meta,
        optimizer=optimizer.state_dict(),
        rng=torch.get_rng_state(),
        train=s.to_dict(),
    )
    ckpt_io.save(path, payload, force=True)


def read_state(path: str | Path) -> SavedState:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no saved training state to resume; run without --resume to start")
    ckpt = ckpt_io.load(p)
    extras = ckpt.extras
    if extras.get("kind") != STATE_KIND:
        raise CheckpointError(f"{p}: not an orthocli training state file")
    if extras.get("state_version") != STATE_VERSION:
        raise CheckpointError(
            f"{p}: a training state of version {extras.get('state_version')}; this orthocli resumes version"
            f" {STATE_VERSION} only: start the run over with --force, or resume it with the orthocli that began it"
        )
    try:
        config = TrainConfig.from_dict(extras["config"])
        loop = LoopState.from_dict(extras["train"])
        return SavedState(config, extras["meta"], loop, ckpt.state_dict, extras["optimizer"], extras["rng"])
    except (KeyError, TypeError, ValueError, UsageError) as e:
        raise CheckpointError(f"{p}: a damaged training state file ({e}); start the run over with --force") from None


def _load_state(path, model, optimizer, cfg: TrainConfig) -> LoopState:
    if path is None:
        raise UsageError("resume needs the state file's path")
    saved = read_state(path)
    if saved.config != cfg:
        now, then = cfg.to_dict(), saved.config.to_dict()
        diff = sorted(k for k in now if then[k] != now[k])
        raise UsageError(f"{path}: the state was saved with another configuration (differs in: {', '.join(diff)})")
    model.load_state_dict(saved.state_dict)
    optimizer.load_state_dict(_copied(saved.optimizer))
    torch.set_rng_state(saved.rng.clone())
    return _copied(saved.loop)


def _copied(obj):
    """Own copies of the tensors read from the file (it is memory-mapped and replaced every epoch)."""

    def leaf(x):
        if isinstance(x, torch.Tensor):
            return x.clone()
        if isinstance(x, (LoopState, Best)):
            return dataclasses.replace(x, **{f.name: _copied(getattr(x, f.name)) for f in fields(x)})
        return x

    return map_tree(obj, leaf)
