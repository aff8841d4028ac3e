"""RePr in the user's own training loop: `ReprConfig`, `SubNetwork` and the controller `RePr`.

`RePr(model, optimizer, config)` follows the schedule of `orthocli train` (S1 standard units, S2
sub-network units, `cycles` times, then plain training), counted in epochs (the loop calls
`epoch_end()`) or in optimizer steps (counted by the optimizer's own step hooks, so a step that
AMP's GradScaler skips, an evaluation pass or a micro-batch of gradient accumulation counts
nothing). At the start of a cycle's first sub-network unit it scores the conv filters, drops the
most redundant (zeroed in place, `subnet.make_record` / `apply_drops`), masks them with forward
hooks (`masking.ChannelMasks`) and keeps them bit-identical with optimizer step hooks
(`subnet.Freezer`); after the cycle's last sub-network unit it re-introduces them from the null
space (`subnet.reintroduce`, a generator seeded by (seed, cycle)) and zeroes their optimizer
state rows. Parameters are changed in place, never replaced; the model's `state_dict()` keeps
its keys. `orthocli train` drives this same class.

A drop falls due at a unit boundary and is made at the first training-mode forward pass after it
(or the next optimizer step, or `prepare()`), so validation run between two units sees the
network the last unit trained. Under torch.distributed, drop decisions and re-initialised values
are rank 0's on every rank.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from orthocli.banks import FilterBank, banks_from_model
from orthocli.candidates import fixed_or_none
from orthocli.droprule import DEFAULT_DROP
from orthocli.drops import DropRule, plan_drops
from orthocli.errors import CheckpointError, UsageError, first_line
from orthocli.layers import convs_from_module
from orthocli.masking import ChannelMasks
from orthocli.subnet import Freezer, apply_drops, make_record, masks_from_record, reintroduce, reset_optimizer_rows

STATE_FORMAT = "orthocli-repr"
STATE_VERSION = 1
UNITS = ("epoch", "step")

# What a dropped filter's tensors hold while it is frozen: these roles zero (as `apply_drops`
# leaves them), every other (BatchNorm statistics, PReLU slopes) its value before the drop.
_ZEROED_ROLES = ("conv_weight", "conv_bias", "bn_weight", "bn_bias")


@dataclass
class ReprConfig:
    """The schedule and drop rule; the defaults are `orthocli train`'s."""

    # --- schedule, in `unit`s (the paper: S1 20, S2 10, N 3 epochs) ---
    s1: int = 20  # standard units before each drop (S1)
    s2: int = 10  # sub-network units per cycle (S2)
    cycles: int = 3  # drop / re-introduce cycles (N); then plain training for as long as the loop runs
    unit: str = "epoch"  # "epoch": the loop calls epoch_end(); "step": optimizer steps, counted by hooks
    # --- which filters drop: the rule of `orthocli prune` ---
    # neither ratio nor threshold (the default): each layer drops its share of redundancy above
    # chance, at most 30% (DropRule)
    ratio: float | None = None  # instead: this fraction of the candidate filters per cycle (the patent: 30%)
    threshold: float | None = None  # instead: every filter scoring above this
    scope: str = DEFAULT_DROP.scope  # "layer": each layer by itself; "global": ranked across the network by ratio
    min_keep: int = DEFAULT_DROP.min_keep  # filters every layer keeps
    layers: list[str] = field(default_factory=list)  # only conv layers matching these globs (empty: all)
    exclude: list[str] = field(default_factory=list)  # never drop from layers matching these globs
    skip_first: bool = DEFAULT_DROP.skip_first  # never drop from the first conv: its few input dims look redundant
    skip_last: bool = DEFAULT_DROP.skip_last  # where torch.fx cannot see the graph, never drop from the last conv
    # --- re-introduction ---
    reinit_scale: float = 1.0  # norm of a new filter, as a multiple of the layer's mean kept-filter norm
    # the next layer's weights for a re-introduced channel: "zero" (the output is unchanged at
    # re-introduction) or "keep" (the paper); see `subnet.reintroduce`
    reinit_fan_out: str = "zero"
    seed: int = 0  # the re-initialisation of cycle c draws from a generator seeded by (seed, c)

    def __post_init__(self) -> None:
        if min(self.s1, self.s2, self.cycles) < 0:
            raise UsageError("s1, s2 and cycles must be 0 or more")
        if self.cycles and self.s2 < 1:
            raise UsageError("s2 must be at least 1 when cycles is above 0")
        if self.unit not in UNITS:
            raise UsageError(f"unit must be 'epoch' or 'step', got {self.unit!r}")
        if not self.reinit_scale > 0:
            raise UsageError(f"reinit_scale must be positive, got {self.reinit_scale}")
        if self.reinit_fan_out not in ("keep", "zero"):
            raise UsageError(f"reinit_fan_out must be 'keep' or 'zero', got {self.reinit_fan_out!r}")
        self.layers, self.exclude = list(self.layers or []), list(self.exclude or [])
        self.drop_rule()

    def drop_rule(self) -> DropRule:
        try:
            return DropRule(ratio=self.ratio, threshold=self.threshold, scope=self.scope, min_keep=self.min_keep)
        except ValueError as e:
            raise UsageError(str(e)) from None

    @property
    def period(self) -> int:
        return self.s1 + self.s2


@dataclass
class Cycle:
    """What one cycle's re-introduction did."""

    cycle: int  # 1-based
    dropped: dict[str, int]  # layer -> filters dropped (and re-introduced)
    reintroduced: dict[str, dict[str, int]]  # layer -> {dropped, null_space, kept_only, random} (see nullspace)

    @property
    def fallbacks(self) -> dict[str, dict[str, int]]:
        """Layers where some new filters could not be orthogonal to their old values (or to anything)."""
        return {
            n: {"kept_only": r["kept_only"], "random": r["random"]}
            for n, r in self.reintroduced.items()
            if r["kept_only"] or r["random"]
        }


def sub_seed(seed: int, stream: int, index: int) -> int:
    """An independent seed for (run seed, stream, index): data order is stream 1, re-init stream 2."""
    return (seed * 1_000_003 + stream * 10_007 + index) % (2**63 - 1)


def reinit_seed(seed: int, cycle: int) -> int:
    """The seed of the generator that re-introduces the filters of cycle `cycle` (1-based) of a run
    seeded `seed`. `orthocli reinit --seed S --cycle K` uses it too, so the steps run one by one
    re-initialise to the values `orthocli train --seed S` gives in its cycle K."""
    return sub_seed(seed, 2, cycle)


def unwrap(model: nn.Module) -> nn.Module:
    """The module a DistributedDataParallel / DataParallel wrapper holds (its keys are the user's)."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


def trace_banks(model: nn.Module) -> list[FilterBank]:
    """`banks.banks_from_model`, with an untraceable model as a UsageError."""
    try:
        return banks_from_model(model)
    except Exception as e:  # torch.fx raises many kinds of errors on untraceable code
        raise UsageError(
            f"the model cannot be traced by torch.fx, which dropping filters needs ({type(e).__name__}:"
            f" {first_line(e)}); make its forward traceable, or train without the method"
            " (--cycles 0)"
        ) from None


@contextmanager
def _full_precision(model: nn.Module):
    """No autograd and no autocast while scoring and re-initialising: a drop made inside the user's
    forward pass (the first one after a boundary) may run under autocast, which would score in bf16."""
    devices = {p.device.type for p in model.parameters()} | {"cpu"}
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        for device in sorted(devices):
            stack.enter_context(torch.autocast(device, enabled=False))
        yield


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def choose_drops(model: nn.Module, config: ReprConfig) -> dict[str, torch.Tensor]:
    """Layer -> filter indices to drop now, by `config`'s rule (as `orthocli prune`); under
    torch.distributed rank 0's choice on every rank. Empty when a threshold or an adaptive rule selects
    nothing."""
    try:
        plan = plan_drops(
            convs_from_module(model),
            config.drop_rule(),
            include=config.layers or None,
            exclude=config.exclude or None,
            skip_first=config.skip_first,
            skip_last=config.skip_last,
            fixed=fixed_or_none(model),  # output layers and shared convs keep every filter
        )
        drops = plan.drops
    except UsageError:
        if config.ratio is not None:
            raise
        drops = {}
    if _distributed():
        import torch.distributed as dist

        box = [{k: v.tolist() for k, v in drops.items()}]
        dist.broadcast_object_list(box, src=0)
        drops = {k: torch.tensor(v, dtype=torch.long) for k, v in box[0].items()}
    return drops


def write_frozen_values(model: nn.Module, record: dict) -> None:
    """Give the dropped filters' tensors the values they keep while frozen, in place."""
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    missing = sorted(
        ch["key"] for layer in record["layers"].values() for ch in layer["channels"] if ch["key"] not in tensors
    )
    if missing:
        raise CheckpointError(
            f"the drop record names tensors this model does not have ({', '.join(missing[:5])}); it belongs to"
            " another model"
        )
    with torch.no_grad():
        for layer in record["layers"].values():
            for ch in layer["channels"]:
                t = tensors[ch["key"]]
                idx = layer["dropped"].to(t.device)
                if ch["role"] in _ZEROED_ROLES:
                    t.index_fill_(ch["dim"], idx, 0.0)
                else:
                    t.index_copy_(ch["dim"], idx, ch["old"].to(t.device, t.dtype))


class SubNetwork:
    """A drop record applied to a live model and its optimizer: the dropped filters are masked
    (forward hooks) and stay bit-identical through every optimizer step (step hooks) until
    `remove()`. For a checkpoint `orthocli prune` wrote, pass its record (extras["prune"]).

    Create it after the model is on its device; the model's values of the dropped filters are set
    to the record's frozen values (zero weights, biases and BatchNorm affine parameters)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        record: dict,
        *,
        masks: ChannelMasks | None = None,
        hooks: bool = True,
    ) -> None:
        self.model, self.record = unwrap(model), record
        if masks is None:
            banks = [b for b in trace_banks(self.model) if b.name in record["layers"]]
            masks = ChannelMasks(self.model, banks)
        self._masks = masks
        write_frozen_values(self.model, record)
        masks_from_record(record, {n: masks.masks[n] for n in record["layers"]})
        masks.activate(record["layers"])
        self.freezer = Freezer(self.model, record)
        self._handles = []
        if hooks:  # (RePr calls the freezer from its own step hooks: none may be added while they run)
            self._handles = [
                optimizer.register_step_pre_hook(lambda *_: self.freezer.zero_grads()),
                optimizer.register_step_post_hook(lambda *_: self.freezer.restore()),
            ]

    def remove(self) -> None:
        """Unmask and unfreeze (the filters keep their frozen values until changed)."""
        self._masks.remove()
        for h in self._handles:
            h.remove()
        self._handles = []


class RePr:
    """The RePr schedule driven by a user's loop. See the module docstring and docs/api.md.

        repr = RePr(model, optimizer, ReprConfig(s1=20, s2=10, cycles=3))
        for epoch in range(epochs):
            train_one_epoch(model, optimizer)   # forward, backward, optimizer.step() as usual
            validate(model)
            repr.epoch_end()

    Save `repr.state_dict()` beside `model.state_dict()` and `optimizer.state_dict()`; to resume,
    load those into a fresh model and optimizer, create the controller, then `load_state_dict`.
    """

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, config: ReprConfig | None = None, **options: Any
    ) -> None:
        if config is not None and options:
            raise TypeError("give either a ReprConfig or keyword options, not both")
        self.config = config if config is not None else ReprConfig(**options)
        self.model, self.optimizer = unwrap(model), optimizer
        self.epoch = 0  # epochs finished (epoch_end calls)
        self.step = 0  # optimizer steps taken
        self.cycles: list[Cycle] = []  # one entry per re-introduction
        self._dropped_cycle = 0  # the last cycle whose drop was made (or found nothing to drop)
        self._sub: SubNetwork | None = None
        self._triggers: list = []
        self._masks: ChannelMasks | None = None
        self._banks: list[FilterBank] = []
        if self.config.cycles:
            self._banks = trace_banks(self.model)
            self._masks = ChannelMasks(self.model, self._banks)
            self._masks.check(self._check_rule())
        self._handles = [
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        self._arm()

    # --- where the schedule stands ---------------------------------------------------------

    @property
    def units(self) -> int:
        """Units finished: epochs or optimizer steps, by `config.unit`."""
        return self.epoch if self.config.unit == "epoch" else self.step

    @property
    def cycle(self) -> int | None:
        """The cycle (1-based) the current unit belongs to; None in the final phase."""
        c = self.config
        return self.units // c.period + 1 if c.cycles and self.units < c.cycles * c.period else None

    @property
    def phase(self) -> str:
        """'standard' (S1), 'subnet' (S2) or 'final', of the unit now running (or next to run)."""
        if self.cycle is None:
            return "final"
        return "standard" if self.units % self.config.period < self.config.s1 else "subnet"

    @property
    def record(self) -> dict | None:
        """The active drop record (the sub-network trains), else None."""
        return self._sub.record if self._sub is not None else None

    @property
    def drop_due(self) -> bool:
        return self.phase == "subnet" and self.cycle > self._dropped_cycle

    def masks(self) -> dict[str, torch.Tensor]:
        """Layer -> bool tensor, True for a kept filter: all True outside a sub-network."""
        if self._masks is None:
            return {}
        out = {}
        for name, m in self._masks.masks.items():
            layer = (self.record or {"layers": {}})["layers"].get(name)
            keep = torch.ones(m.shape[1], dtype=torch.bool)
            if layer is not None:
                keep[layer["dropped"]] = False
            out[name] = keep
        return out

    # --- what the loop tells it --------------------------------------------------------------

    def epoch_end(self) -> Cycle | None:
        """Call after every training epoch (after validating it, if the loop does). Returns the
        cycle's report when this ended its last sub-network unit (the filters are back)."""
        if self._sub is not None:  # forward passes after the last step moved BatchNorm statistics
            self._sub.freezer.restore()
        self.epoch += 1
        return self._boundary() if self.config.unit == "epoch" else None

    def prepare(self) -> dict | None:
        """Make a drop that is due now (else nothing); the drop record. Done automatically at the
        first training-mode forward pass or optimizer step after the boundary."""
        if self.drop_due:
            self._disarm()
            cycle = self.cycle
            with _full_precision(self.model):
                drops = choose_drops(self.model, self.config)
                self._dropped_cycle = cycle
                if drops:
                    state = self.model.state_dict()  # shares the parameters' storage: edits are live
                    record = make_record(state, self._banks, drops, asdict(self.config.drop_rule()))
                    apply_drops(state, record)
                    self._sub = SubNetwork(self.model, self.optimizer, record, masks=self._masks, hooks=False)
        return self.record

    def remove(self) -> None:
        """Detach every hook (masks, freezing, step counting); the model keeps its current values."""
        self._disarm()
        if self._sub is not None:
            self._sub.remove()
        for h in self._handles:
            h.remove()
        self._handles = []

    # --- saving and resuming ------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain values and tensors (loads with torch.load(weights_only=True))."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": asdict(self.config),
            "epoch": self.epoch,
            "step": self.step,
            "dropped_cycle": self._dropped_cycle,
            "record": self.record,
            "cycles": [asdict(c) for c in self.cycles],
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue where `state` was saved. Load the model's and optimizer's state too (before
        or after this): the dropped filters are set to their frozen values either way."""
        if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
            raise CheckpointError(
                f"not an orthocli RePr state of version {STATE_VERSION} (format {state.get('format')!r},"
                f" version {state.get('version')!r})"
            )
        names = [f.name for f in fields(ReprConfig)]
        saved = state["config"]
        diff = sorted(n for n in names if saved.get(n) != getattr(self.config, n))
        if diff:
            raise UsageError(f"the RePr state was saved with other options (differs in: {', '.join(diff)})")
        self._disarm()
        if self._sub is not None:
            self._sub.remove()
            self._sub = None
        self.epoch, self.step, self._dropped_cycle = int(state["epoch"]), int(state["step"]), state["dropped_cycle"]
        self.cycles = [Cycle(**c) for c in state["cycles"]]
        if state["record"] is not None:
            self._sub = SubNetwork(self.model, self.optimizer, state["record"], masks=self._masks, hooks=False)
        self._arm()

    # --- internals ----------------------------------------------------------------------------

    def _check_rule(self) -> list[str]:
        """Before any training: the layer globs leave a layer to drop from and the ratio drops a filter
        (a threshold or an adaptive rule is checked against each cycle's scores instead: a ratio of
        0.5 stands in).
        The names of the layers that may lose filters."""
        c = self.config
        per_cycle = c.ratio is None
        rule = DropRule(ratio=0.5, scope=c.scope, min_keep=c.min_keep) if per_cycle else None
        plan = plan_drops(
            convs_from_module(self.model),
            rule or c.drop_rule(),
            include=c.layers or None,
            exclude=c.exclude or None,
            skip_first=c.skip_first,
            skip_last=c.skip_last,
            fixed=fixed_or_none(self.model),
        )
        return [s.layer.name for s in plan.candidates]

    def _boundary(self) -> Cycle | None:
        """A unit just ended: re-introduce when it was a cycle's last sub-network unit."""
        c, report = self.config, None
        u = self.units
        if c.cycles and u % c.period == 0 and 0 < u <= c.cycles * c.period and c.s2:
            with _full_precision(self.model):
                report = self._reintroduce(u // c.period)
        self._arm()
        return report

    def _reintroduce(self, cycle: int) -> Cycle:
        sub, self._sub = self._sub, None
        if sub is None:  # a threshold or an adaptive rule dropped nothing this cycle
            entry = Cycle(cycle, {}, {})
        else:
            sub.remove()
            record = sub.record
            state = self.model.state_dict()
            gen = torch.Generator().manual_seed(reinit_seed(self.config.seed, cycle))
            report = reintroduce(state, record, gen, self.config.reinit_scale, self.config.reinit_fan_out)
            if _distributed():  # the new values are rank 0's on every rank
                import torch.distributed as dist

                for layer in record["layers"].values():
                    for ch in layer["channels"]:
                        dist.broadcast(state[ch["key"]], src=0)
            reset_optimizer_rows(self.optimizer, self.model, record, fan_out=self.config.reinit_fan_out == "zero")
            dropped = {name: len(layer["dropped"]) for name, layer in record["layers"].items()}
            entry = Cycle(cycle, dropped, report)
        self.cycles.append(entry)
        return entry

    def _arm(self) -> None:
        """While a drop is due, the first training-mode forward of a conv makes it."""
        self._disarm()
        if not self.drop_due:
            return

        def trigger(module: nn.Module, args) -> None:
            if module.training and self.drop_due:
                self.prepare()

        for bank in self._banks:
            self._triggers.append(self.model.get_submodule(bank.name).register_forward_pre_hook(trigger))

    def _disarm(self) -> None:
        for h in self._triggers:
            h.remove()
        self._triggers = []

    def _before_step(self, optimizer, args, kwargs) -> None:
        self.prepare()
        if self._sub is not None:
            self._sub.freezer.zero_grads()  # no gradient, so no new optimizer state, for dropped filters

    def _after_step(self, optimizer, args, kwargs) -> None:
        if self._sub is not None:
            self._sub.freezer.restore()  # momentum, weight decay, Adam moved them anyway: write them back
        self.step += 1
        if self.config.unit == "step":
            self._boundary()
