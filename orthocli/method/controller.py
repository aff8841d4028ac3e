"""RePr in the user's own training loop: the controller `RePr` (its options: `config.ReprConfig`).

`RePr(model, optimizer, config)` follows the schedule of `orthocli train` (S1 standard units, S2
sub-network units, `cycles` times, then plain training), counted in epochs (the loop calls
`epoch_end()`) or in optimizer steps (counted by the optimizer's own step hooks, so a step that
AMP's GradScaler skips, an evaluation pass or a micro-batch of gradient accumulation counts
nothing). At the start of a cycle's first sub-network unit it scores the conv filters, drops the
most redundant (zeroed in place, `subnet.make_record` / `apply_drops`), masks them with forward
hooks (`masking.ChannelMasks`) and keeps them bit-identical with optimizer step hooks
(`subnet.Freezer`, both held by a `subnet.SubNetwork`); after the cycle's last sub-network unit it re-introduces them from the null
space (`subnet.reintroduce`, a generator seeded by (seed, cycle)) and zeroes their optimizer
state rows. Parameters are changed in place, never replaced; the model's `state_dict()` keeps
its keys. `orthocli train` drives this same class.

The model is traced once (`graph.ModelGraph`), when the controller is created; every cycle's
choice, mask points and drop record read that graph. A drop falls due at a unit boundary and is made at the first training-mode forward pass after it
(or the next optimizer step, or `prepare()`), so validation run between two units sees the
network the last unit trained. Under torch.distributed, drop decisions and re-initialised values
are rank 0's on every rank.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from orthocli.config import ReprConfig
from orthocli.errors import CheckpointError, OptionError, UsageError
from orthocli.method.drops import plan_drops
from orthocli.method.filter_statistics import FilterStatistics, bn_scales
from orthocli.method.masking import ChannelMasks
from orthocli.method.ranking import BN_SCALE, BY_NAME, GATHERED, Ranking, needs, ranking_name
from orthocli.method.subnet import SubNetwork, apply_drops, make_record, reintroduce, reset_optimizer_rows
from orthocli.network.banks import FilterBank, banks_from_model, fixed_layers
from orthocli.network.graph import ModelGraph, method_graph, unwrap
from orthocli.network.layers import convs_from_module
from orthocli.seeding import ranking_seed, reinit_seed

STATE_FORMAT = "orthocli-repr"
STATE_VERSION = 1


@dataclass
class Cycle:
    """What one cycle's re-introduction did."""

    cycle: int  # 1-based
    dropped: dict[str, int]  # layer -> filters dropped (and re-introduced)
    reintroduced: dict[str, dict[str, int]]  # layer -> {dropped, null_space, kept_only, random} (see nullspace)
    # Optimizer steps the sub-network phase took: 0 means it never trained (not "nothing was
    # redundant": `dropped` says that); None in a state saved before it was counted.
    steps: int | None = None

    @property
    def trained(self) -> bool:
        """Whether the sub-network phase took an optimizer step."""
        return self.steps is None or self.steps > 0

    @property
    def fallbacks(self) -> dict[str, dict[str, int]]:
        """Layers where some new filters could not be orthogonal to their old values (or to anything)."""
        return {
            n: {"kept_only": r["kept_only"], "random": r["random"]}
            for n, r in self.reintroduced.items()
            if r["kept_only"] or r["random"]
        }


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


def _compiled(model: nn.Module) -> bool:
    """A module `torch.compile` wrapped (its code runs through dynamo, which does not see a hook
    added after a compiled call)."""
    return isinstance(model, torch._dynamo.eval_frame.OptimizedModule)


def _check_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Refuse optimizers whose step needs a closure (LBFGS): they evaluate the model several times
    inside one step, between the hooks that keep dropped filters frozen."""
    closure = inspect.signature(optimizer.step).parameters.get("closure")
    if isinstance(optimizer, torch.optim.LBFGS) or (closure is not None and closure.default is inspect.Parameter.empty):
        raise UsageError(
            f"RePr does not support {type(optimizer).__name__}: its step() evaluates the model through a closure,"
            " which the hooks that keep dropped filters frozen cannot follow; use an optimizer without a closure"
            " (SGD, Adam, AdamW, ...)"
        )


def _check_holds(optimizer: torch.optim.Optimizer, model: nn.Module, banks: list[FilterBank]) -> None:
    """Refuse an optimizer that does not hold every trainable parameter of the layers that may lose
    filters: it would leave them out of the freezing, or (another model's parameters) train nothing
    the method watches."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    params = dict(model.named_parameters())
    wanted = {ch.key for b in banks for ch in b.channels if ch.key in params and params[ch.key].requires_grad}
    missing = sorted(k for k in wanted if id(params[k]) not in held)
    if missing:
        what = "none" if len(missing) == len(wanted) else f"{len(wanted) - len(missing)} of {len(wanted)}"
        raise OptionError(
            f"the optimizer holds {what} of the parameters of the layers the method may drop from (missing:"
            f" {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); create it from this model's"
            " parameters (model.parameters()), or leave those layers out with {layers} or {exclude}"
        )


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class RePr:
    """The RePr schedule driven by a user's loop. See the module docstring and docs/api.md.

        repr = RePr(model, optimizer, ReprConfig(s1=20, s2=10, cycles=3))
        for epoch in range(epochs):
            train_one_epoch(model, optimizer)   # forward, backward, optimizer.step() as usual
            validate(model)
            repr.epoch_end()

    Save `repr.state_dict()` beside `model.state_dict()` and `optimizer.state_dict()`; to resume,
    load those into a fresh model and optimizer, create the controller, then `load_state_dict`.

    `counts` (cycle -> layer -> filters) replaces the drop rule: cycle c drops exactly those counts
    (a cycle or layer not named: none), chosen by the config's ranking. Another run's `counts`
    property gives them: a `ranking="random"` control that drops as many filters per layer as the
    method did, cycle by cycle (`orthocli train --control random`). Give the same ones on resuming.

    `ranking`: a `ranking.Ranking` object of your own instead of the one `config.ranking` names (it
    receives a `ranking.LayerFacts` per layer). A ranking that reads gathered statistics ("taylor",
    "activation", or one whose `needs` names them) has them gathered by forward and gradient hooks
    during the last standard unit before each drop (`filter_statistics.FilterStatistics`); it needs
    `s1` of at least 1, and the statistics are in `state_dict()`.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        config: ReprConfig | None = None,
        *,
        counts: Mapping[int, Mapping[str, int]] | None = None,
        ranking: Ranking | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError("give either a ReprConfig or keyword options, not both")
        if isinstance(ranking, str):  # a name, as ReprConfig's `ranking` takes it
            config = replace(config, ranking=ranking) if config is not None else None
            options = options if config is not None else {**options, "ranking": ranking}
            ranking = None
        self.config = config if config is not None else ReprConfig(**options)
        self.ranking: Ranking = ranking if ranking is not None else BY_NAME[self.config.ranking]
        self._stats: FilterStatistics | None = None  # gathered for a data-dependent ranking
        self.matched = None if counts is None else {int(c): dict(n) for c, n in counts.items()}
        self.model, self.optimizer = unwrap(model), optimizer
        self.epoch = 0  # epochs finished (epoch_end calls)
        self.step = 0  # optimizer steps taken
        self.cycles: list[Cycle] = []  # one entry per re-introduction
        self._dropped_cycle = 0  # the last cycle whose drop was made (or found nothing to drop)
        self._sub: SubNetwork | None = None
        self._sub_steps = 0  # optimizer steps the running sub-network has trained
        self._stepped = True  # an optimizer step since the last epoch_end (or creation)
        self._triggers: list = []
        self._masks: ChannelMasks | None = None
        self._banks: list[FilterBank] = []
        self.graph: ModelGraph | None = None  # traced once, read by every cycle
        _check_optimizer(optimizer)
        if self.config.cycles:
            self.graph = method_graph(self.model)
            self._banks = banks_from_model(self.graph)
            self._masks = ChannelMasks(self.graph, self._banks)
            candidates = self._check_rule()
            _check_holds(optimizer, self.model, [b for b in self._banks if b.name in candidates])
            self._masks.install(candidates)  # before any compiled call: see masking.py
            self._watch(candidates)
            if self._masks.hooked and _compiled(model):
                torch.compiler.reset()  # a module compiled without the hooks would run on without them
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
        return self.config.phase_at(self.units).cycle

    @property
    def phase(self) -> str:
        """'standard' (S1), 'subnet' (S2) or 'final', of the unit now running (or next to run)."""
        return self.config.phase_at(self.units).name

    @property
    def record(self) -> dict | None:
        """The active drop record (the sub-network trains), else None."""
        return self._sub.record if self._sub is not None else None

    @property
    def counts(self) -> dict[int, dict[str, int]]:
        """Per cycle re-introduced so far, layer -> filters dropped (none: {}): what `counts=` takes."""
        return {c.cycle: dict(c.dropped) for c in self.cycles}

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
        cycle's report when this ended its last sub-network unit (the filters are back). When the
        epoch ended a cycle's standard units, the drop is made here."""
        if self._sub is not None:  # forward passes after the last step moved BatchNorm statistics
            self._sub.freezer.restore()
        if not self._stepped and self.config.unit == "epoch":
            warnings.warn(
                "RePr.epoch_end() was called with no optimizer step since the last call (or since the controller"
                " was created); it counts an epoch anyway. Call it once per training epoch, after the epoch's"
                " optimizer steps, with the optimizer given to RePr",
                RuntimeWarning,
                stacklevel=2,
            )
        self._stepped = False
        self.epoch += 1
        return self._boundary() if self.config.unit == "epoch" else None

    def prepare(self) -> dict | None:
        """Make a drop that is due now (else nothing); the drop record. Done automatically when the
        unit before it ends (`epoch_end()`, or the optimizer step that ends it), and, where a drop is
        due from the start (s1 = 0), at the first training-mode forward pass or optimizer step."""
        if self.drop_due:
            self._disarm()
            cycle = self.cycle
            with _full_precision(self.model):
                drops = self._choose(cycle)
                self._dropped_cycle = cycle
                self._sub_steps = 0
                if drops:
                    state = self.model.state_dict()  # shares the parameters' storage: edits are live
                    rule = {**self.config.rule_dict(), "ranking": ranking_name(self.ranking)}
                    record = make_record(state, self._banks, drops, rule, self.graph)
                    apply_drops(state, record)
                    self._sub = SubNetwork(self.model, self.optimizer, record, masks=self._masks, hooks=False)
        return self.record

    def remove(self) -> None:
        """Detach every hook (masks, freezing, step counting); the model keeps its current values."""
        self._disarm()
        if self._sub is not None:
            self._sub.remove()
        if self._stats is not None:
            self._stats.remove()
        for h in self._handles:
            h.remove()
        self._handles = []

    # --- saving and resuming ------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Plain values and tensors (loads with torch.load(weights_only=True))."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": self.config.method_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "dropped_cycle": self._dropped_cycle,
            "sub_steps": self._sub_steps,
            "record": self.record,
            "cycles": [asdict(c) for c in self.cycles],
            "statistics": None if self._stats is None else self._stats.state_dict(),
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
        saved = {**ReprConfig().method_dict(), **state["config"]}  # an option added since: its default
        diff = sorted(n for n in names if saved.get(n) != getattr(self.config, n))
        if diff:
            raise UsageError(f"the RePr state was saved with other options (differs in: {', '.join(diff)})")
        self._disarm()
        if self._sub is not None:
            self._sub.remove()
            self._sub = None
        self.epoch, self.step, self._dropped_cycle = int(state["epoch"]), int(state["step"]), state["dropped_cycle"]
        self._sub_steps = int(state.get("sub_steps", 0))  # (absent from states saved before it was counted)
        self.cycles = [Cycle(**c) for c in state["cycles"]]
        if self._stats is not None:  # (absent from states saved before rankings gathered statistics)
            self._stats.load_state_dict(state.get("statistics"))
        self._stepped = True  # (a Lightning resume catches up with an epoch_end of its own)
        if state["record"] is not None:
            self._sub = SubNetwork(self.model, self.optimizer, state["record"], masks=self._masks, hooks=False)
        if self._stats is not None:
            self._stats.active = self._gathering()
        self._arm()

    # --- internals ----------------------------------------------------------------------------

    def _check_rule(self) -> list[str]:
        """Before any training: the layer patterns leave a layer to drop from and the ratio drops a
        filter (a threshold or an adaptive rule is checked against each cycle's scores instead: a
        ratio of 0.5 stands in). The names of the layers that may lose filters."""
        c = self.config
        rule = replace(c, ratio=0.5, threshold=None) if c.ratio is None else c
        check = BY_NAME["orthogonality"]  # which layers and counts, not which filters: any ranking will do
        plan = plan_drops(convs_from_module(self.model), rule, fixed=fixed_layers(self.graph), ranking=check)
        names = [s.layer.name for s in plan.candidates]
        wanted = needs(self.ranking)
        if wanted & set(GATHERED) and c.s1 < 1:
            raise OptionError(
                f"the {ranking_name(self.ranking)} ranking reads statistics gathered during the last standard"
                " {unit} before each drop: {s1} must be at least 1"
            )
        if BN_SCALE in wanted:
            scales = bn_scales(self._banks, self.model.state_dict())
            bare = [n for n in names if scales.get(n) is None]
            if bare:
                raise OptionError(
                    f"the bn-scale ranking reads the scale of the BatchNorm after each conv, and none follows"
                    f" {', '.join(bare[:3])}; leave it out with {{exclude}}, or choose another ranking"
                )
        for cycle_counts in (self.matched or {}).values():  # bad counts are refused before training too
            plan_drops(
                convs_from_module(self.model), rule, fixed=fixed_layers(self.graph), counts=cycle_counts, ranking=check
            )
        return names

    def _choose(self, cycle: int) -> dict[str, torch.Tensor]:
        """Layer -> filter indices to drop now, by the config's rule and ranking (as `orthocli
        prune`); under torch.distributed rank 0's choice on every rank. Empty when a threshold or
        an adaptive rule selects nothing."""
        c = self.config
        try:
            plan = plan_drops(
                convs_from_module(self.model),
                c,
                fixed=fixed_layers(self.graph),  # output layers and shared convs keep every filter
                seed=ranking_seed(c.seed, cycle),
                counts=None if self.matched is None else self.matched.get(cycle, {}),
                ranking=self.ranking,
                bn_scales=bn_scales(self._banks, self.model.state_dict()) if BN_SCALE in needs(self.ranking) else None,
                stats=None if self._stats is None else self._stats.result(),
            )
            drops = plan.drops
        except OptionError:
            if c.ratio is not None:
                raise
            drops = {}
        finally:
            if self._stats is not None:
                self._stats.clear()  # the next cycle's choice reads its own epoch's batches
        if _distributed():
            import torch.distributed as dist

            box = [{k: v.tolist() for k, v in drops.items()}]
            dist.broadcast_object_list(box, src=0)
            drops = {k: torch.tensor(v, dtype=torch.long) for k, v in box[0].items()}
        return drops

    def _boundary(self) -> Cycle | None:
        """A unit just ended: re-introduce when it was a cycle's last sub-network unit; drop when
        the next is a cycle's first. Made here, not at the next forward pass: a compiled forward
        pass runs no hook added after it was compiled."""
        report = None
        if self._stats is not None:
            self._stats.active = self._gathering()
        ended = self.config.phase_at(self.units - 1) if self.units else None
        if ended is not None and ended.reinit_after:
            with _full_precision(self.model):
                report = self._reintroduce(ended.cycle)
        self.prepare()
        return report

    def _reintroduce(self, cycle: int) -> Cycle:
        sub, self._sub = self._sub, None
        if sub is None:  # a threshold or an adaptive rule dropped nothing this cycle
            entry = Cycle(cycle, {}, {}, self._sub_steps)
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
            entry = Cycle(cycle, dropped, report, self._sub_steps)
        self.cycles.append(entry)
        return entry

    def _watch(self, candidates: list[str]) -> None:
        """For a ranking that reads gathered statistics: the hooks that gather them (switched on in
        the last standard unit before each drop, `_gathering`)."""
        wanted = needs(self.ranking) & set(GATHERED)
        if wanted:
            self._stats = FilterStatistics(self.model, candidates, wanted)
            self._stats.active = self._gathering()

    def _gathering(self) -> bool:
        """Whether the unit now running is the last standard one before a drop."""
        c = self.config
        return c.phase_at(self.units).name == "standard" and c.phase_at(self.units + 1).drop_before

    def _arm(self) -> None:
        """While a drop is due from the start (s1 = 0, or a state saved before it), the first
        training-mode forward of a conv makes it. Every later drop is made at its boundary."""
        self._disarm()
        if not self.drop_due:
            return

        @torch.compiler.disable  # runs in Python even inside a compiled forward pass
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
        # the unit this step belongs to: the epoch now running, or (counted in steps) this step
        unit = self.epoch if self.config.unit == "epoch" else self.step
        if self.config.phase_at(unit).name == "subnet":
            self._sub_steps += 1
        self.step += 1
        self._stepped = True
        if self.config.unit == "step":
            self._boundary()
