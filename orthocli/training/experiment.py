"""One `orthocli train` invocation, an experiment: the method run, with --baseline the control
beside it, with --control random a third arm that drops as many filters per layer as the method in
every cycle, chosen at random (is it the ranking that helps, or dropping and re-introducing any
filters?), with --control random,l1,taylor one such matched arm per criterion (`training/arms.py`,
OUT.<arm>.pt), and every file they write. Its options arrive typed (`ModelOptions`, `DataOptions`,
`OutputOptions`, `HardwareOptions`, and `config.TrainConfig`); what it needs to continue is saved
as a `RunMeta` in its state files. Training itself is `orthocli.training.loop`; what the user sees is the
caller's (a `Reporter` gets progress and messages).

Files an experiment writes, next to -o OUT.pt: OUT.pt (the trained model), OUT.baseline.pt
(--baseline), OUT.random.pt (--control random), OUT.cycle<k>.pt (--save-cycles, after each
re-introduction), and while it runs OUT.pt.state (and OUT.baseline.pt.state, OUT.random.pt.state):
the training state at the end of an epoch (saved at most every --state-every seconds, and after
the last epoch), which --resume reads and which is removed once every output is written.

The arms train one after another, the method first: the random arm drops, in cycle c, exactly the
per-layer counts the method run dropped in its cycle c (`RePr(counts=...)`; with the adaptive rule
its own scores would give other counts after the first cycle), chosen by `ranking="random"` from
(seed, cycle), so it repeats and resumes exactly with no generator state saved.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orthocli.errors import CheckpointError, Diverged, OutputError, UsageError
from orthocli.scoring.plot import need_matplotlib
from orthocli.training.arms import arm_name, check_arms, control_arms
from orthocli.training.options import (
    STATE_EVERY,
    DataOptions,
    HardwareOptions,
    ModelOptions,
    OutputOptions,
    RunMeta,
)

if TYPE_CHECKING:
    from orthocli.config import TrainConfig
    from orthocli.method.redundancy import Redundancy


class Reporter(Protocol):
    """What an experiment tells its caller (the CLI's progress display implements it)."""

    quiet: bool  # set by the experiment on ranks other than 0: rank 0 reports

    def __enter__(self) -> Reporter: ...  # around the whole training (a progress bar lives this long)

    def __exit__(self, *exc: object) -> None: ...

    def log(self, text: str) -> None: ...  # a message for the user

    def start(self, role: str, cfg: TrainConfig) -> None: ...  # a run ("repr", "baseline" or "random") begins

    def update(self, role: str, event: dict) -> None: ...  # an epoch ended (training's "epoch" event)

    def cycle(self, role: str, entry: dict) -> None: ...  # a cycle ended (training's "cycle" event)

    def redundancy(self, note: RedundancyNote) -> None: ...  # the method's layers against chance (see the note)


@dataclass(frozen=True)
class RedundancyNote:
    """Whether the method has anything to remove, told before it costs a run: the candidate layers
    against random filters at the start (once per experiment) and at the method run's first drop."""

    when: str  # "start" (the weights training begins from) or "first_drop" (those cycle 1 drops from)
    epoch: int  # epochs trained before these weights: 0 at the start, S1 at the first drop
    report: Redundancy
    new_model: bool  # a new model: its filters start as random ones, so about 1x chance at the start
    first_drop_epoch: int  # S1: when the first drop reads the trained filters


def sibling(output: Path, tag: str) -> Path:
    return output.with_name(f"{output.stem}.{tag}{output.suffix or '.pt'}")


def state_path(output: Path) -> Path:
    return output.with_name(output.name + ".state")


def role_output(output: Path, role: str) -> Path:
    """Where an arm is written: the method to OUT.pt, the others beside it (OUT.baseline.pt, OUT.random.pt)."""
    return output if role == "repr" else sibling(output, role)


class _ArmNames(dict):
    def __missing__(self, role: str) -> str:
        return arm_name(role)


ARM_NAMES = _ArmNames()  # in messages: "RePr", "Control", "Random drops", "L1 drops" (training/arms.py)


class Experiment:
    """Resolved options, data, outputs; trains its arms (`roles`: the method run first, then the
    control and the random-drop arm), writes the files."""

    def __init__(
        self, cfg: TrainConfig, meta: RunMeta, *, resume: bool, state_every: float, reporter: Reporter
    ) -> None:
        self.cfg, self.meta, self.resume, self.state_every = cfg, meta, resume, state_every
        self.reporter = reporter
        self.output = meta.output
        self.results: dict[str, Any] = {}
        self.metrics_file = None
        self.saved_history: dict[str, list] = {}  # per role, the epochs a resumed run already did
        self.diverged: dict[str, Diverged] = {}  # per role, a run whose loss stopped being finite (--baseline)
        self.skipped: dict[str, str] = {}  # per role, an arm that could not train, and why
        self.method_counts: dict[int, dict[str, int]] = {}  # per cycle the method run finished, its drops per layer
        self.start_redundancy: Redundancy | None = None  # the method's layers before training (cycles > 0)

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def fresh(
        cls,
        cfg: TrainConfig,
        *,
        model: ModelOptions,
        data: DataOptions,
        outputs: OutputOptions,
        hardware: HardwareOptions,
        force: bool = False,
        state_every: float = STATE_EVERY,
        reporter: Reporter,
    ) -> Experiment:
        if outputs.plot is not None:
            need_matplotlib("--plot")
        check_control(cfg, outputs)
        if outputs.output is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError(
                "under torchrun give -o/--output: every process must write to (rank 0) or read from the same path"
            )
        if outputs.output is None:
            outputs = dataclasses.replace(outputs, output=default_output(model.arch or "convnet"))
        meta = RunMeta(model=model, data=data, outputs=outputs, hardware=hardware)
        run = cls(cfg, meta, resume=False, state_every=state_every, reporter=reporter)
        state = state_path(meta.output)
        if state.exists() and not force:
            raise OutputError(
                f"{state}: an interrupted run's state is here; continue it with --resume, or start over with --force"
            )
        run.check_outputs(force=force)
        return run

    @classmethod
    def resumed(
        cls, output: Path | None, *, hardware: HardwareOptions, state_every: float, reporter: Reporter
    ) -> Experiment:
        """The interrupted experiment that writes `output`, with its saved options; it may move to
        other hardware (device, precision and compile are taken from `hardware`, threads stay saved)."""
        from orthocli.training.loop import read_state

        if output is None:
            raise UsageError("--resume needs -o/--output: the output path of the interrupted run")
        where = state_path(Path(output))
        saved = read_state(where)
        meta = RunMeta.from_dict(saved.meta, where)
        if meta.role != "repr":
            raise UsageError(f"give -o the method run's output, not the {meta.role} arm's")
        meta = dataclasses.replace(
            meta,
            hardware=dataclasses.replace(
                meta.hardware, device=hardware.device, precision=hardware.precision, compile=hardware.compile
            ),
        )
        reporter.log(f"Resuming {output} with its saved options (options given now are ignored, except --json)")
        cfg = dataclasses.replace(saved.config, baseline=False)
        run = cls(cfg, meta, resume=True, state_every=state_every, reporter=reporter)
        run.saved_history["repr"] = saved.loop.history
        for role in run.roles[1:]:
            arm_state = state_path(role_output(Path(output), role))
            if arm_state.exists():
                run.saved_history[role] = read_state(arm_state).loop.history
        if meta.outputs.plot:
            need_matplotlib("--plot")
        run.check_outputs(force=True)
        return run

    @property
    def roles(self) -> tuple[str, ...]:
        """The arms this experiment trains, in order: the method, the control (--baseline), the
        random-drop arm (--control random), which needs the method's counts."""
        o = self.meta.outputs
        return ("repr",) + (("baseline",) if o.baseline else ()) + control_arms(o.control)

    def paths(self) -> list[Path]:
        o, out = self.meta.outputs, self.output
        paths = [role_output(out, role) for role in self.roles]
        if o.save_cycles:
            paths += [sibling(out, f"cycle{c}") for c in range(1, self.cfg.cycles + 1)]
        paths += [p for p in (o.metrics, o.plot) if p]
        return paths

    def check_outputs(self, force: bool) -> None:
        from orthocli.atomic import check_output

        m = self.meta
        inputs = [str(p) for p in (m.model.checkpoint, m.data.data, m.data.test_data) if p]
        paths = self.paths()
        if len(set(map(os.path.abspath, paths))) < len(paths):
            raise UsageError("two outputs share one path; give --metrics, --plot and -o different files")
        for p in paths:
            check_output(p, force=force, inputs=inputs)

    def prepared_data(self):
        from orthocli.data import prepare

        d = self.meta.data
        return prepare(
            d.builtin if d.data is None else Path(d.data),  # a Path is always a path, never a set's name
            test_path=None if d.test_data is None else str(d.test_data),
            val_fraction=self.cfg.val_fraction,
            seed=self.cfg.seed,
            max_samples=d.max_samples,
            image_size=d.image_size,
            augment=d.augment,
            workers=d.workers,
            in_memory=d.in_memory,
        )

    def model(self, data):
        """A fresh model (seeded) or the starting checkpoint's; its arch dict (None for a pickled
        module) and drop record (None unless the checkpoint is pruned)."""
        from orthocli.network.models import arch_spec, build_model, init_weights
        from orthocli.seeding import set_seed

        m = self.meta.model
        set_seed(self.cfg.seed)
        if m.checkpoint is None:
            opts = m.arch_options()
            arch = arch_spec(
                m.arch or "convnet",
                in_channels=data.in_channels,
                num_classes=data.num_classes,
                input_shape=list(data.spatial_shape),
                arch_args=m.arch_args,
                **opts,
            )
            model = build_model(arch)
            if arch["name"] != "callable":
                init_weights(model, opts.get("activation", "relu"))
            else:
                self.warn_outputs(model, arch, data)
            return model, arch, None
        return model_from_checkpoint(m, data)

    def warn_outputs(self, model, arch: dict, data) -> None:
        """A builder not told the number of classes (torchvision's take `num_classes` through **kwargs,
        given only by --arch-args) keeps its own, often 1,000: trainable, but not what was meant."""
        from torch import nn

        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
        if last and last[0].out_features != data.num_classes and "num_classes" not in arch["args"]:
            self.reporter.log(
                f"Warning: the model's last Linear has {last[0].out_features} outputs and the data"
                f" {data.num_classes} classes; give the builder its argument for that"
                f" (--arch-args num_classes={data.num_classes})"
            )

    # -- training ------------------------------------------------------------------------------
    def train_all(self) -> None:
        from orthocli.training.runtime import setup

        hw = self.meta.hardware
        if hw.threads:
            import torch

            torch.set_num_threads(hw.threads)
        self.rt = setup(hw.device, hw.precision, deterministic=self.cfg.deterministic, compile=hw.compile)
        data = self.prepared_data()
        self.data = data
        where = self.rt.describe()
        self.banner = [
            f"Training on {where['name']} ({where['device']}, {where['precision']})"
            + (f", {where['world_size']} processes" if self.rt.distributed else "")
        ]
        self.banner.append(
            f"Data: {data.source}: {len(data.train)} train, {len(data.val)} val"
            + (f", {len(data.test)} test" if data.test is not None else "")
            + f"; writing {self.output}"
        )
        if not len(data.val) and self.cfg.val_fraction > 0:  # too few samples per class to hold any out
            self.banner.append(
                f"Warning: the validation split is empty ({len(data.train)} samples): no early stopping and no"
                " choice of the best epoch; the last epoch's weights are kept. Give more data to have one"
            )
        self.reporter.quiet = not self.rt.is_main
        self.check_arms(data)
        with self.reporter:
            for role in self.roles:
                if role in control_arms(self.meta.outputs.control) and self.matched_counts() is None:
                    self.skipped[role] = "the RePr run diverged before its last cycle: no drop counts to match"
                    self.reporter.log(f"{ARM_NAMES[role]}: not trained ({self.skipped[role]})")
                    continue
                try:
                    self.train_one(role, data)
                except Diverged as e:
                    if not self.meta.outputs.baseline:
                        raise
                    # runs compared: keep and report the others' results instead of losing them all
                    self.diverged[role] = e
                    self.reporter.log(f"{ARM_NAMES[role]}: {e}")

    def check_arms(self, data) -> None:
        """Before anything trains: each matched arm's ranking applies to this model (bn-scale: a
        BatchNorm after every candidate conv; taylor, activation: --s1 of 1 or more), by creating
        its controller on a fresh model (OptionError, nothing written, otherwise)."""
        import torch

        from orthocli.method.controller import RePr

        for role in control_arms(self.meta.outputs.control):
            model, _, record = self.model(data)
            if record is None:
                RePr(model, torch.optim.SGD(model.parameters(), lr=0.0), self.arm_config(role)).remove()

    def arm_config(self, role: str) -> TrainConfig:
        """The configuration an arm trains with: the control drops nothing, the random arm ranks at random."""
        if role in control_arms(self.meta.outputs.control):  # a matched arm: its criterion ranks
            return dataclasses.replace(self.cfg, baseline=False, ranking=role)
        return dataclasses.replace(self.cfg, baseline=role == "baseline")

    def matched_counts(self) -> dict[int, dict[str, int]] | None:
        """Per cycle, the filters each layer of the method run dropped (the random arm drops as many);
        None when the method run diverged before it finished every cycle."""
        if "repr" in self.results:
            result, _ = self.results["repr"]
            return {int(c["cycle"]): dict(c.get("dropped") or {}) for c in result.cycles}
        return self.method_counts if len(self.method_counts) == self.cfg.cycles else None

    def train_one(self, role: str, data) -> None:
        from orthocli.method.redundancy import assess
        from orthocli.training.loop import train

        output = role_output(self.output, role)
        cfg = self.arm_config(role)
        model, arch, record = self.model(data)
        if self.rt.is_main and self.banner:  # once the model is built: bad input fails silently before
            for line in self.banner:
                self.reporter.log(line)
            self.banner = []
        if record is not None and self.meta.outputs.baseline:
            raise UsageError(
                "--baseline compares whole schedules; it does not apply to a pruned checkpoint's sub-network"
            )
        if role == "repr" and record is None and cfg.cycles > 0:  # is there anything to remove?
            self.start_redundancy = assess(model, cfg)
            self.reporter.redundancy(
                RedundancyNote("start", 0, self.start_redundancy, self.meta.model.checkpoint is None, cfg.s1)
            )
        state = state_path(output)
        resume = self.resume and state.exists()
        if self.resume and role == "repr" and not resume:
            raise UsageError(f"{state}: no saved training state to resume")
        if len(self.roles) > 1:
            self.reporter.log(f"{ARM_NAMES[role]}: training, writing {output}")
        self.reporter.start(role, cfg)
        result = train(
            model,
            data,
            cfg,
            record=record,
            callback=lambda e: self.on_event(role, e, arch),
            state_path=state,
            resume=resume,
            state_every=self.state_every,
            meta=dataclasses.replace(self.meta, role=role).to_dict(),
            runtime=self.rt,
            counts=self.matched_counts() if role in control_arms(self.meta.outputs.control) else None,
        )
        if self.rt.is_main:
            self.write_model(output, result, arch, cfg, role)
        self.results[role] = (result, output)

    def first_drop_redundancy(self, history: list[dict]) -> Redundancy | None:
        """The method's layers as cycle 1's drop reads them (the end of epoch S1), from its history."""
        s1 = self.cfg.s1
        if s1 == 0:  # the first drop reads the weights training starts from
            return self.start_redundancy
        if self.start_redundancy is None or len(history) < s1 or "layer_means" not in history[s1 - 1]:
            return None
        return self.start_redundancy.with_means(history[s1 - 1]["layer_means"], self.cfg)

    def on_event(self, role: str, event: dict, arch) -> None:
        if event["kind"] == "epoch":
            if role == "repr" and event["epoch"] == self.cfg.s1 and self.start_redundancy is not None:
                report = self.start_redundancy.with_means(event["layer_means"], self.cfg)
                new = self.meta.model.checkpoint is None
                self.reporter.redundancy(RedundancyNote("first_drop", event["epoch"], report, new, self.cfg.s1))
            self.reporter.update(role, event)
            if self.meta.outputs.metrics:
                self.log_metrics(role, event)
        elif event["kind"] == "cycle":
            if role == "repr":  # kept in case it diverges later: the random arm still has every cycle's counts
                self.method_counts[int(event["cycle"])] = dict(event.get("dropped") or {})
            self.reporter.cycle(role, event)
            if role == "repr" and self.meta.outputs.save_cycles:
                import orthocli.checkpoints.checkpoint as ckpt_io

                path = sibling(self.output, f"cycle{event['cycle']}")
                sd = {k: v.detach().clone() for k, v in event["state_dict"].items()}
                ckpt_io.save(
                    path,
                    ckpt_io.make_payload(
                        sd, arch=arch, config=self.resolved(), data=self.data_extras(), cycle=event["cycle"]
                    ),
                    force=True,
                )

    def log_metrics(self, role: str, event: dict) -> None:
        if self.metrics_file is None:  # opened at the first epoch: bad input writes nothing
            self.metrics_file = open(self.meta.outputs.metrics, "w")  # noqa: SIM115 (open across epochs)
            for r, history in self.saved_history.items():  # a resumed run: what the state files hold
                self.metrics_file.writelines(metric_line(r, e) for e in history)
        self.metrics_file.write(metric_line(role, event))
        self.metrics_file.flush()

    # -- outputs -------------------------------------------------------------------------------
    def resolved(self, cfg: TrainConfig | None = None) -> dict:
        """The configuration as option names -> values: enough to repeat the run (--config); `cfg`:
        an arm's own (the random arm's ranking), else the experiment's."""
        doc = self.meta.options()
        outputs = {k: doc.pop(k) for k in ("baseline", "control")}  # after the config's own baseline
        doc.update((cfg or self.cfg).to_dict())
        doc.update(outputs)
        return doc

    def data_extras(self) -> dict:
        d = self.data
        return {
            "source": d.source,
            "mean": d.mean,
            "std": d.std,
            "num_classes": d.num_classes,
            "in_channels": d.in_channels,
            "input_shape": list(d.spatial_shape),
        }

    def run_summary(self, role: str, result) -> dict:
        """An arm's summary (saved in its checkpoint, read back by --seeds --resume): the method run's
        adds its layers against chance, at the start and at the first drop."""
        doc = result.summary()
        if role == "repr" and self.start_redundancy is not None:
            first = self.first_drop_redundancy(result.history)
            doc["redundancy"] = {
                "start": self.start_redundancy.to_dict(),
                "first_drop": None if first is None else {"epoch": self.cfg.s1, **first.to_dict()},
            }
        return doc

    def write_model(self, output: Path, result, arch, cfg, role: str) -> None:
        import orthocli.checkpoints.checkpoint as ckpt_io

        sd = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
        payload = ckpt_io.make_payload(
            sd,
            arch=arch,
            config=self.resolved(cfg),
            history=result.history,
            data=self.data_extras(),
            summary=self.run_summary(role, result),
            role=role,
            prune=result.record,
        )
        ckpt_io.save(output, payload, force=True)  # outputs were checked before training

    def close(self) -> dict | None:
        """Finish the files (metrics, plot; state files removed) and return the summary document;
        None on ranks other than 0, which write and report nothing."""
        from orthocli.training.runtime import teardown

        teardown(self.rt)
        if not self.rt.is_main:
            return None
        if self.metrics_file is not None:
            self.metrics_file.close()
        if self.meta.outputs.plot:
            from orthocli.scoring.plot import plot_history

            chance = {lr.name: lr.chance for lr in self.start_redundancy.layers} if self.start_redundancy else {}
            plot_history(
                self.meta.outputs.plot, {r: res.history for r, (res, _) in self.results.items()}, chance=chance
            )
        for _, output in self.results.values():
            state_path(output).unlink(missing_ok=True)
        for role in self.diverged:  # resuming would only diverge again
            state_path(role_output(self.output, role)).unlink(missing_ok=True)
        return self.document()

    def document(self) -> dict:
        """The method run's summary, with --baseline the control's under "baseline" and with
        --control random the random arm's under "random"; a run that diverged is {"diverged":
        {epoch, phase, cycle, message}, "output": None} instead, one not trained {"skipped": why,
        "output": None}."""
        doc = self._summary("repr")
        for role in self.roles[1:]:
            doc[role] = self._summary(role)
        doc["runtime"] = self.rt.describe()
        doc["config"] = self.resolved()
        doc["data"] = self.data_extras()
        if self.meta.outputs.metrics:
            doc["metrics"] = str(self.meta.outputs.metrics)
        if self.meta.outputs.plot:
            doc["plot"] = str(self.meta.outputs.plot)
        return doc

    def _summary(self, role: str) -> dict:
        if role in self.diverged:
            return {"diverged": self.diverged[role].to_dict(), "output": None}
        if role in self.skipped:
            return {"skipped": self.skipped[role], "output": None}
        result, output = self.results[role]
        return {**self.run_summary(role, result), "output": str(output)}


# ---------------------------------------------------------------------------------------------
# Helpers


def default_output(arch: str) -> Path:
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in arch.split(":")[-1]) or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    runs = Path("runs")
    runs.mkdir(exist_ok=True)
    return runs / f"{name}-{stamp}.pt"


def check_control(cfg: TrainConfig, outputs: OutputOptions) -> None:
    """--control names a third arm beside the method and its control; it needs both, and drops."""
    if outputs.control is None:
        return
    check_arms(outputs.control)
    if not outputs.baseline:
        raise UsageError(
            f"--control {outputs.control} trains a third arm beside the plain control: add --baseline"
            f" (orthocli train --baseline --control {outputs.control})"
        )
    if cfg.cycles == 0:
        raise UsageError(f"--control {outputs.control} compares the method's drops with other criteria': --cycles is 0")


def model_from_checkpoint(m: ModelOptions, data):
    import torch

    import orthocli.checkpoints.checkpoint as ckpt_io
    from orthocli.checkpoints.model import load_weights, rebuild
    from orthocli.network.models import arch_spec

    path = str(m.checkpoint)
    ck = ckpt_io.load(path, key=m.key, trust=m.trust)
    arch = ck.extras.get("arch")
    if arch is None and m.arch:
        arch = arch_spec(
            m.arch,
            in_channels=data.in_channels,
            num_classes=data.num_classes,
            input_shape=list(data.spatial_shape),
            arch_args=m.arch_args,
            **m.arch_options(),
        )
    ck.check_finite()
    if arch is not None:
        # a `callable` architecture the file records runs code: only with --trust, or when the user names it
        trusted = m.trust or ck.extras.get("arch") is None or m.arch == arch.get("target")
        error = CheckpointError if ck.extras.get("arch") else UsageError  # the file's record, or the user's --arch
        model = load_weights(rebuild(arch, trusted=trusted, where=path, error=error), ck.state_dict, path, arch)
    elif isinstance(ck.module, torch.nn.Module) and not isinstance(ck.module, torch.jit.ScriptModule):
        model = ck.module.float()
    elif ck.module is not None:
        raise CheckpointError(f"{path}: a TorchScript archive cannot be trained; start from its state dict with --arch")
    else:
        raise CheckpointError(
            f"{path}: records no architecture; give --arch (and its options) to build the model for these weights"
        )
    return model, arch, ck.extras.get("prune")


def metric_line(role: str, event: dict) -> str:
    keep = ("epoch", "phase", "cycle", "lr", "loss", "train_acc", "val_loss", "val_acc", "seconds", "layer_means")
    doc = {"run": role, **{k: event.get(k) for k in keep}}
    doc = {
        k: (None if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")) else v)
        for k, v in doc.items()
    }
    return json.dumps(doc) + "\n"
