"""The options, declared once. `ReprConfig`, the method's: its fields, defaults and checks are the
one source that `RePr`, the Lightning callback, the plain functions of `api.py`, `prune`, `reinit`
and every command's option defaults derive from. `TrainConfig` extends it with the training loop's
own options (`orthocli train`, `training.loop.train`). No torch here: `orthocli --help` builds the
option defaults from them.

Bad values raise `OptionError`, whose message names options as `{field}`: the library's own words
(`ratio must be ...`) where a user called the library, the flags (`--ratio must be ...`) where the
CLI did (`cli.common`).

The schedule is computed here too, once (`ReprConfig.phase_at`): the training loop lists its epochs
with it and the controller reads the unit it is in from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from orthocli.errors import OptionError, UsageError

UNITS = ("epoch", "step")
SCOPES = ("layer", "global")
FAN_OUTS = ("zero", "keep")
# Which filters of a layer a cycle drops, as many as the drop rule says (orthocli.method.ranking):
# "orthogonality" the most redundant first (the method), "random" a seeded random choice (the
# control that asks whether the ranking matters), "least" the least redundant first; the pruning
# criteria "l1" (smallest filter weight L1 norm), "bn-scale" (smallest |scale| of the following
# BatchNorm), and, from the batches of the last standard epoch before each drop, "taylor" (smallest
# mean |activation x gradient|) and "activation" (smallest mean |activation|).
RANKINGS = ("orthogonality", "random", "least", "l1", "bn-scale", "taylor", "activation")
DATA_RANKINGS = ("taylor", "activation")  # need training batches: not `prune` on a checkpoint
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}  # TrainConfig.lr when not given, per optimizer
# The most the adaptive rule drops of a layer at once: the patent's 30%. Filters of thousands of
# weights lie far above the chance score without being copies (crepe_tiny: 50-70% of a layer).
ADAPTIVE_CAP = 0.3


@dataclass(frozen=True)
class Phase:
    """Where one unit (an epoch, or an optimizer step) of the schedule falls."""

    name: str  # "standard" (S1), "subnet" (S2), "final" (after the last cycle)
    cycle: int | None  # 1-based; None in the final phase
    drop_before: bool = False  # the cycle's filters are scored and dropped before this unit
    reinit_after: bool = False  # they are re-introduced after it


@dataclass
class ReprConfig:
    """The RePr schedule, which filters drop and how they come back; the defaults are `orthocli
    train`'s. Validated on creation (`OptionError`)."""

    # --- schedule, in `unit`s (the paper: S1 20, S2 10, N 3 epochs) ---
    s1: int = 20  # standard units before each drop (S1)
    s2: int = 10  # sub-network units per cycle (S2)
    cycles: int = 3  # drop / re-introduce cycles (N); then plain training for as long as the loop runs
    unit: str = "epoch"  # "epoch": the loop calls epoch_end(); "step": optimizer steps, counted by hooks
    # --- how many filters drop (`drops.choose_drops`) ---
    # Neither ratio nor threshold (the default): each layer drops the share of its filters by which
    # its mean score exceeds that of random filters of its shape, at most ADAPTIVE_CAP; a layer no
    # more redundant than chance drops nothing.
    ratio: float | None = None  # instead: this fraction of the candidate filters per cycle (the patent: 30%)
    threshold: float | None = None  # instead: every filter scoring above this
    scope: str = "layer"  # "layer": each layer by itself; "global": ranked across the network by ratio (the authors')
    min_keep: int = 1  # filters every layer keeps
    # --- which filters of a layer: the ranking (`orthocli.method.ranking`) ---
    ranking: str = "orthogonality"  # one of RANKINGS: "orthogonality" (the method), a control, a pruning criterion
    # --- which layers may lose filters ---
    layers: list[str] = field(default_factory=list)  # only conv layers matching these patterns (empty: all)
    exclude: list[str] = field(default_factory=list)  # never drop from layers matching these patterns
    skip_first: bool = True  # never drop from the first conv: its few-dimensional filters always look redundant
    skip_last: bool = True  # where torch.fx cannot see the graph, never drop from the last conv (the likely output)
    # --- re-introduction ---
    reinit_scale: float = 1.0  # norm of a new filter, as a multiple of the layer's mean kept-filter norm
    # The next layer's weights for a re-introduced channel: "zero" (the network's output is unchanged at
    # re-introduction) or "keep" (the paper: they stay as trained for the old filter, and the output
    # jumps, by orders of magnitude in the loss with a long flattened feature map into a Linear).
    reinit_fan_out: str = "zero"
    seed: int = 0  # re-initialisation and random ranking of cycle c draw from generators seeded by (seed, c)

    def __post_init__(self) -> None:
        self.layers, self.exclude = list(self.layers or []), list(self.exclude or [])
        check(min(self.s1, self.s2, self.cycles) >= 0, "{s1}, {s2} and {cycles} must be 0 or more")
        check(self.cycles == 0 or self.s2 >= 1, "{s2} must be at least 1 when {cycles} is above 0")
        check(self.unit in UNITS, f"{{unit}} must be 'epoch' or 'step', got {self.unit!r}")
        check(
            self.ratio is None or self.threshold is None,
            "{ratio} and {threshold} are two ways to choose the filters; give one",
        )
        check(
            self.ratio is None or 0 < self.ratio < 1, f"{{ratio}} must be between 0 and 1 (exclusive), got {self.ratio}"
        )
        check(self.scope in SCOPES, f"{{scope}} must be 'layer' or 'global', got {self.scope!r}")
        check(
            self.scope == "layer" or self.ratio is not None,
            "{scope} global ranks the network's filters together by a ratio; give {ratio} too",
        )
        check(self.min_keep >= 1, f"{{min_keep}} must be at least 1, got {self.min_keep}")
        check(self.ranking in RANKINGS, f"{{ranking}} must be one of {', '.join(RANKINGS)}, got {self.ranking!r}")
        check(self.reinit_scale > 0, f"{{reinit_scale}} must be positive, got {self.reinit_scale}")
        check(
            self.reinit_fan_out in FAN_OUTS,
            f"{{reinit_fan_out}} must be 'keep' or 'zero', got {self.reinit_fan_out!r}",
        )

    # --- the drop rule ---------------------------------------------------------------------------

    @property
    def adaptive(self) -> bool:
        """Neither a ratio nor a threshold: each layer drops by its redundancy above chance."""
        return self.ratio is None and self.threshold is None

    def rule_dict(self) -> dict[str, Any]:
        """The drop rule as plain values (saved in drop records, shown by `prune --json`)."""
        return {
            "ratio": self.ratio,
            "threshold": self.threshold,
            "scope": self.scope,
            "min_keep": self.min_keep,
            "ranking": self.ranking,
            "adaptive": self.adaptive,
        }

    def method_dict(self) -> dict[str, Any]:
        """The method's options alone (a subclass's own fields left out), by field name."""
        return {f.name: getattr(self, f.name) for f in fields(ReprConfig)}

    # --- the schedule ----------------------------------------------------------------------------

    @property
    def period(self) -> int:
        return self.s1 + self.s2

    def phase_at(self, unit: int) -> Phase:
        """The phase of the 0-based `unit`: S1 standard units, then S2 sub-network units, `cycles`
        times; then the final phase for as long as training goes on."""
        if self.cycles and unit < self.cycles * self.period:
            cycle, within = unit // self.period + 1, unit % self.period
            if within < self.s1:
                return Phase("standard", cycle)
            return Phase("subnet", cycle, drop_before=within == self.s1, reinit_after=within == self.period - 1)
        return Phase("final", None)


# Fields whose option (flag, --config key, saved key) has another name: "schedule" alone would say
# nothing about the learning rate next to the epoch phases (TrainConfig.lr_schedule).
_OPTION_NAMES = {"lr_schedule": "schedule"}


def option_name(field_name: str) -> str:
    """The option a field is spelled as in flags, --config files and saved configs."""
    return _OPTION_NAMES.get(field_name, field_name)


def check(ok: bool, template: str) -> None:
    """Raise OptionError(template) unless `ok`; the template names options as `{field}`."""
    if not ok:
        raise OptionError(template)


@dataclass
class TrainConfig(ReprConfig):
    """Everything that changes a training run: the method's options (`ReprConfig`, declared there
    once: the schedule in epochs, the drop rule, the ranking, the layers, the re-introduction, the
    seed, which here also seeds model init, validation split and data order) and the loop's own."""

    # --- how long (the paper: S1 20, S2 10, N 3, 100 epochs in all) ---
    max_epochs: int | None = None  # cap on ALL epochs; None = cycles*(s1+s2) + s1 (final phase at most s1)
    patience: int = 10  # final phase: stop after this many epochs without a better val accuracy
    # --- optimisation ---
    optimizer: str = "sgd"  # "sgd" (momentum, weight decay) or "adam" (L2 weight decay)
    lr: float | None = None  # peak learning rate; None = 0.01 for sgd, 1e-3 for adam
    momentum: float = 0.9  # sgd only
    weight_decay: float = 5e-4  # L2 penalty
    # lr per epoch over max_epochs (--schedule): "none" (constant), "cosine", "step" (x0.1 at 50% and 75%).
    # Constant by default: a decaying lr leaves the filters re-introduced in the last cycle too little to recover.
    lr_schedule: str = "none"
    batch_size: int = 64
    # Optimizer steps an epoch takes at least (0: one pass): on small data an epoch is a handful of
    # steps, so S1/S2 counted in epochs would leave a re-introduced filter almost no steps to recover.
    # 25 turned significant losses on small sets into none (benchmarks/HISTORY.md, round 2); larger sets
    # are unaffected.
    min_steps: int = 25
    loss: str = "ce"  # "ce" cross-entropy; "mse" the patent's E = 1/2 sum_k (softmax_k - onehot_k)^2, batch mean
    # --- reproducibility and data ---
    deterministic: bool = False  # torch.use_deterministic_algorithms for the run
    val_fraction: float = 0.1  # part of the training data held out for validation (0: no early stopping)
    baseline: bool = False  # the control: same schedule and budget, nothing dropped

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.unit == "epoch", "train counts the schedule in epochs; {unit} must be 'epoch'")
        check(self.patience >= 1, f"{{patience}} must be at least 1, got {self.patience}")
        check(self.optimizer in DEFAULT_LR, f"{{optimizer}} must be 'sgd' or 'adam', got '{self.optimizer}'")
        check(
            self.lr_schedule in ("cosine", "step", "none"),
            f"{{lr_schedule}} must be 'cosine', 'step' or 'none', got '{self.lr_schedule}'",
        )
        check(self.loss in ("ce", "mse"), f"{{loss}} must be 'ce' or 'mse', got '{self.loss}'")
        check(self.batch_size >= 1, f"{{batch_size}} must be at least 1, got {self.batch_size}")
        check(self.min_steps >= 0, f"{{min_steps}} must be 0 or more, got {self.min_steps}")
        check(self.lr is None or self.lr > 0, f"{{lr}} must be positive, got {self.lr}")
        check(self.momentum >= 0 and self.weight_decay >= 0, "{momentum} and {weight_decay} must be 0 or more")
        fixed = self.cycles * self.period
        check(
            self.max_epochs is None or self.max_epochs >= fixed,
            f"{{max_epochs}} {self.max_epochs} is shorter than the cycles ({self.cycles} x ({self.s1} + {self.s2})"
            f" = {fixed} epochs); raise it or lower {{cycles}}",
        )

    @property
    def total_epochs(self) -> int:
        return self.max_epochs if self.max_epochs is not None else self.cycles * self.period + self.s1

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict:
        """By option name (the keys of --config, of a checkpoint's `config` and of the state file's);
        `unit` is no option of train (it counts epochs)."""
        return {option_name(k): v for k, v in asdict(self).items() if k != "unit"}

    @classmethod
    def from_dict(cls, doc: dict) -> TrainConfig:
        """The inverse of `to_dict`; UsageError naming any key that is not an option of it."""
        by_option = {option_name(f.name): f.name for f in fields(cls) if f.name != "unit"}
        unknown = sorted(set(doc) - set(by_option))
        if unknown:
            raise UsageError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**{by_option[k]: v for k, v in doc.items()})
