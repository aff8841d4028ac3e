"""`orthocli train`: the whole method in one command (build or load a model, train it with the
RePr schedule on real data, write the converged model). Training itself is `orthocli.training`.

Files a run writes, next to -o OUT.pt: OUT.pt (the trained model), OUT.baseline.pt (--baseline),
OUT.cycle<k>.pt (--save-cycles, after each re-introduction), and while it runs OUT.pt.state (and
OUT.baseline.pt.state): the training state at the end of an epoch (saved at most every STATE_EVERY
seconds, and after the last epoch), which --resume reads and which is removed once every output
is written.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from orthocli.cli import app
from orthocli.cli.common import (
    ExcludeOpt, ForceOpt, JsonOpt, KeyOpt, LayersOpt, OutOpt, TrustOpt, command, fail, log, print_json, stderr, stdout,
)
from orthocli.cli.options import MinKeepOpt, RatioOpt, ReinitScaleOpt, ScopeOpt, SkipFirstOpt, ThresholdOpt
from orthocli.errors import EXIT_INTERRUPTED, OutputError, UsageError

EPILOG = (
    "Example: orthocli train --cycles 5 --baseline -o runs/digits.pt --plot runs/digits.png\n\n"
    "Continue an interrupted run: orthocli train -o runs/digits.pt --resume"
)
ARCH = "Model"
DATA = "Data"
SCHED = "Schedule"
OPT = "Optimisation"
OUT = "Outputs"
HW = "Hardware"

# Default seconds between two saves of the training state (at the end of an epoch; the last epoch
# always): saving after every epoch of a small model would cost more than the epoch itself.
STATE_EVERY = 5.0

# Options that describe how the model is built (not fields of TrainConfig).
ARCH_OPTIONS = ("width", "depth", "kernel", "pool", "batchnorm", "activation")


def _opt(*names: str, panel: str, **kw: Any) -> Any:
    return typer.Option(*names, rich_help_panel=panel, **kw)


@command(app, epilog=EPILOG)
def train(
    ctx: typer.Context,
    checkpoint: Annotated[Optional[Path], typer.Argument(help="Start from this checkpoint (any orthocli checkpoint; a pruned one trains its sub-network for --s2 epochs). Default: a new model.", show_default=False)] = None,
    arch: Annotated[Optional[str], _opt("--arch", panel=ARCH, help="convnet | resnet20 | package.module:callable (called with in_channels, num_classes, input_shape and the options below it accepts). Default: convnet.", show_default=False)] = None,
    width: Annotated[Optional[int], _opt("--width", panel=ARCH, min=1, help="Filters per conv layer (resnet20: of the first stage). Default: 32 convnet, 16 resnet20.", show_default=False)] = None,
    depth: Annotated[Optional[int], _opt("--depth", panel=ARCH, min=1, help="convnet: conv blocks. Default: 3.", show_default=False)] = None,
    kernel: Annotated[Optional[int], _opt("--kernel", panel=ARCH, min=1, help="convnet: kernel size. Default: 3.", show_default=False)] = None,
    pool: Annotated[Optional[Literal["max", "avg", "none"]], _opt("--pool", panel=ARCH, help="convnet: pooling after each block. Default: max.", show_default=False)] = None,
    batchnorm: Annotated[Optional[bool], _opt("--batchnorm/--no-batchnorm", panel=ARCH, help="convnet: BatchNorm after each conv. Default: no.", show_default=False)] = None,
    activation: Annotated[Literal["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "silu"], _opt("--activation", panel=ARCH, help="Activation (sigmoid: the patent's). Built-in models start He-normal, Xavier-normal for sigmoid/tanh; a callable keeps its own init.")] = "relu",
    loss: Annotated[Literal["ce", "mse"], _opt("--loss", panel=ARCH, help="ce: cross-entropy; mse: the patent's E = 1/2 sum (softmax - one-hot)^2.")] = "ce",
    data: Annotated[Optional[Path], _opt("--data", panel=DATA, help="Training data: .npz/.pt/.safetensors with x, y; image folder; CIFAR-10 binary or MNIST IDX folder. Default: built-in UCI digits.", show_default=False)] = None,
    test_data: Annotated[Optional[Path], _opt("--test-data", panel=DATA, help="Separate test set (replaces one stored with --data).", show_default=False)] = None,
    val_fraction: Annotated[float, _opt("--val-fraction", panel=DATA, min=0.0, max=0.9, help="Part of the training data held out for validation and early stopping.")] = 0.1,
    max_samples: Annotated[Optional[int], _opt("--max-samples", panel=DATA, min=1, help="Use at most this many training samples (stratified).", show_default=False)] = None,
    s1: Annotated[int, _opt("--s1", panel=SCHED, min=0, help="Standard epochs before each drop.")] = 20,
    s2: Annotated[int, _opt("--s2", panel=SCHED, min=0, help="Sub-network epochs per cycle.")] = 10,
    cycles: Annotated[int, _opt("--cycles", panel=SCHED, min=0, help="Drop / re-introduce cycles (0: plain training).")] = 3,
    max_epochs: Annotated[Optional[int], _opt("--max-epochs", panel=SCHED, min=1, help="Cap on all epochs. Default: cycles*(s1+s2) + s1.", show_default=False)] = None,
    patience: Annotated[int, _opt("--patience", panel=SCHED, min=1, help="After the cycles: stop after this many epochs without a better val accuracy.")] = 10,
    ratio: RatioOpt = 0.3,
    threshold: ThresholdOpt = None,
    scope: ScopeOpt = "global",
    min_keep: MinKeepOpt = 1,
    layers: LayersOpt = None,
    exclude: ExcludeOpt = None,
    skip_first: SkipFirstOpt = True,
    reinit_scale: ReinitScaleOpt = 1.0,
    optimizer: Annotated[Literal["sgd", "adam"], _opt("--optimizer", panel=OPT, help="sgd (with momentum) or adam.")] = "sgd",
    lr: Annotated[Optional[float], _opt("--lr", panel=OPT, min=0.0, help="Peak learning rate. Default: 0.01 sgd, 0.001 adam.", show_default=False)] = None,
    momentum: Annotated[float, _opt("--momentum", panel=OPT, min=0.0, help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, _opt("--weight-decay", panel=OPT, min=0.0, help="L2 penalty.")] = 5e-4,
    schedule: Annotated[Literal["cosine", "step", "none"], _opt("--schedule", panel=OPT, help="Learning rate over all epochs: constant, cosine, or step (x0.1 at 50% and 75%). Decaying leaves the last re-introduced filters little lr to recover.")] = "none",
    batch_size: Annotated[int, _opt("--batch-size", panel=OPT, min=1, help="Mini-batch size.")] = 64,
    seed: Annotated[int, _opt("--seed", panel=OPT, help="Seeds model init, validation split, data order and re-initialisation.")] = 0,
    threads: Annotated[Optional[int], _opt("--threads", panel=OPT, min=1, help="CPU threads for torch. Default: torch's choice (for small models 1 is often fastest).", show_default=False)] = None,
    deterministic: Annotated[bool, _opt("--deterministic", panel=OPT, help="Deterministic algorithms only (exactly repeatable, also across --resume).")] = False,
    device: Annotated[str, _opt("--device", panel=HW, help="auto | cpu | cuda | cuda:N | mps. auto: the GPU when there is one (under torchrun, each process its own).")] = "auto",
    precision: Annotated[str, _opt("--precision", panel=HW, help="auto | fp32 | bf16 | fp16: autocast precision of the forward pass (CUDA only; fp16 with a gradient scaler). auto: bf16 on a CUDA GPU that has it, else fp32.")] = "auto",
    baseline: Annotated[bool, _opt("--baseline", panel=OUT, help="Also train a control with the same budget, seed and data order, dropping nothing; compare side by side.")] = False,
    output: OutOpt = None,
    force: ForceOpt = False,
    save_cycles: Annotated[bool, _opt("--save-cycles", panel=OUT, help="Also write OUT.cycle<k>.pt after each re-introduction.")] = False,
    metrics: Annotated[Optional[Path], _opt("--metrics", panel=OUT, help="Write one JSON line per epoch to this file.", show_default=False)] = None,
    plot: Annotated[Optional[Path], _opt("--plot", panel=OUT, help="Plot validation accuracy per epoch to this PNG (needs matplotlib: pip install 'orthocli\\[plot]').", show_default=False)] = None,
    config: Annotated[Optional[Path], _opt("--config", panel=OUT, help="Read options from a TOML file (keys as the long option names, e.g. max_epochs = 50); command-line flags win.", show_default=False)] = None,
    state_every: Annotated[float, _opt("--state-every", panel=OUT, min=0.0, help="Seconds between saves of the training state for --resume (at the end of an epoch; 0: every epoch).")] = STATE_EVERY,
    resume: Annotated[bool, _opt("--resume", panel=OUT, help="Continue the interrupted run that writes -o OUT (from OUT.state, with its saved options).")] = False,
    key: KeyOpt = None,
    trust: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Train with the RePr schedule: train, drop redundant filters, train the sub-network, re-introduce them orthogonally, repeat."""
    opts = {k: v for k, v in locals().items() if k != "ctx"}
    if config is not None:
        opts = _with_toml(ctx, opts, config)
    run = _Run.resumed(opts) if opts["resume"] else _Run.fresh(opts)
    try:
        run.train_all()
    except KeyboardInterrupt:
        if _state_path(run.output).exists():
            fail(f"interrupted; continue with: orthocli train -o {run.output} --resume", EXIT_INTERRUPTED)
        fail(f"interrupted before the first state was saved (every {opts['state_every']:g} s); nothing to resume", EXIT_INTERRUPTED)
    run.finish()


# ---------------------------------------------------------------------------------------------
# Options from TOML


def _with_toml(ctx: typer.Context, opts: dict, path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError("--config needs Python 3.11, or the tomli package on Python 3.10: pip install tomli") from None
    try:
        from click.core import ParameterSource
    except ImportError:  # typer >= 0.24 carries its own copy of click
        from typer._click.core import ParameterSource

    try:
        table = tomllib.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    params = {p.name: p for p in ctx.command.params}
    out = dict(opts)
    for raw, value in table.items():
        name = {"json": "json_out"}.get(raw.replace("-", "_"), raw.replace("-", "_"))
        if name not in params or name == "config":
            known = ", ".join(sorted(n for n in params if n != "config"))
            raise UsageError(f"--config {path}: unknown option '{raw}'; the options are: {known}")
        if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None):
            continue  # given on the command line: the flag wins
        try:
            out[name] = params[name].process_value(ctx, value)
        except Exception as e:  # the parser's own check of the value (choices, ranges, types)
            raise UsageError(f"--config {path}: bad value for '{raw}': {getattr(e, 'message', e)}") from None
    return out


# ---------------------------------------------------------------------------------------------
# One invocation: the method run and, with --baseline, the control


def _sibling(output: Path, tag: str) -> Path:
    return output.with_name(f"{output.stem}.{tag}{output.suffix or '.pt'}")


def _state_path(output: Path) -> Path:
    return output.with_name(output.name + ".state")


class _Run:
    """Resolved options, data, outputs; trains the method run and the baseline, writes the files."""

    def __init__(self, opts: dict, cfg, meta: dict, resume: bool) -> None:
        self.opts, self.cfg, self.meta, self.resume = opts, cfg, meta, resume
        self.output = Path(meta["output"])
        self.results: dict[str, Any] = {}
        self.metrics_file = None
        self.saved_history: dict[str, list] = {}  # per role, the epochs a resumed run already did

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def fresh(cls, o: dict) -> "_Run":
        from orthocli.training import TrainConfig

        fields = set(TrainConfig.__dataclass_fields__)
        cfg = TrainConfig(**{k: v for k, v in o.items() if k in fields and k not in ("layers", "exclude")}, layers=o["layers"] or [], exclude=o["exclude"] or [])
        if o["plot"] is not None:
            _need_matplotlib()
        if o["output"] is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UsageError("under torchrun give -o/--output: every process must write to (rank 0) or read from the same path")
        output = o["output"] or _default_output(o["arch"] or "convnet")
        meta = {
            "output": str(output), "checkpoint": str(o["checkpoint"]) if o["checkpoint"] else None, "key": o["key"],
            "trust": o["trust"], "arch_name": o["arch"], "arch_options": {k: o[k] for k in ARCH_OPTIONS},
            "data": str(o["data"]) if o["data"] else None, "test_data": str(o["test_data"]) if o["test_data"] else None,
            "max_samples": o["max_samples"], "threads": o["threads"], "baseline": o["baseline"], "save_cycles": o["save_cycles"],
            "metrics": str(o["metrics"]) if o["metrics"] else None, "plot": str(o["plot"]) if o["plot"] else None,
            "device": o["device"], "precision": o["precision"],
        }
        run = cls(o, cfg, meta, resume=False)
        state = _state_path(output)
        if state.exists() and not o["force"]:
            raise OutputError(f"{state}: an interrupted run's state is here; continue it with --resume, or start over with --force")
        run.check_outputs(force=o["force"])
        return run

    @classmethod
    def resumed(cls, o: dict) -> "_Run":
        from orthocli.training import TrainConfig, read_state

        if o["output"] is None:
            raise UsageError("--resume needs -o/--output: the output path of the interrupted run")
        saved = read_state(_state_path(o["output"]))
        meta = {**saved["meta"], "device": o["device"], "precision": o["precision"]}  # a run may move
        if meta.get("role") == "baseline":
            raise UsageError("give -o the method run's output, not the baseline's")
        log(f"Resuming {o['output']} with its saved options (options given now are ignored, except --json)")
        cfg = TrainConfig(**{**saved["config"], "baseline": False})
        run = cls(o, cfg, meta, resume=True)
        run.saved_history["repr"] = saved["train"]["history"]
        baseline_state = _state_path(_sibling(Path(o["output"]), "baseline"))
        if meta["baseline"] and baseline_state.exists():
            run.saved_history["baseline"] = read_state(baseline_state)["train"]["history"]
        if meta["plot"]:
            _need_matplotlib()
        run.check_outputs(force=True)
        return run

    def paths(self) -> list[Path]:
        m, out = self.meta, self.output
        paths = [out]
        if m["baseline"]:
            paths.append(_sibling(out, "baseline"))
        if m["save_cycles"]:
            paths += [_sibling(out, f"cycle{c}") for c in range(1, self.cfg.cycles + 1)]
        paths += [Path(p) for p in (m["metrics"], m["plot"]) if p]
        return paths

    def check_outputs(self, force: bool) -> None:
        from orthocli import checkpoint as ckpt_io

        inputs = [p for p in (self.meta["checkpoint"], self.meta["data"], self.meta["test_data"]) if p]
        paths = self.paths()
        if len(set(map(os.path.abspath, paths))) < len(paths):
            raise UsageError("two outputs share one path; give --metrics, --plot and -o different files")
        for p in paths:
            ckpt_io.check_output(p, force=force, inputs=inputs)

    def prepared_data(self):
        from orthocli.data import prepare

        m = self.meta
        return prepare(m["data"], test_path=m["test_data"], val_fraction=self.cfg.val_fraction, seed=self.cfg.seed, max_samples=m["max_samples"])

    def model(self, data):
        """A fresh model (seeded) or the starting checkpoint's; its arch dict (None for a pickled
        module) and drop record (None unless the checkpoint is pruned)."""
        from orthocli.models import arch_spec, build_model, init_weights
        from orthocli.training import set_seed

        m = self.meta
        set_seed(self.cfg.seed)
        if m["checkpoint"] is None:
            opts = {k: v for k, v in m["arch_options"].items() if v is not None}
            arch = arch_spec(m["arch_name"] or "convnet", in_channels=data.in_channels, num_classes=data.num_classes, input_shape=list(data.spatial_shape), **opts)
            model = build_model(arch)
            if arch["name"] != "callable":
                init_weights(model, opts.get("activation", "relu"))
            return model, arch, None
        return _from_checkpoint(m, data)

    # -- training ------------------------------------------------------------------------------
    def train_all(self) -> None:
        from orthocli.runtime import setup

        if self.meta.get("threads"):
            import torch

            torch.set_num_threads(self.meta["threads"])
        self.rt = setup(self.meta.get("device", "auto"), self.meta.get("precision", "auto"), deterministic=self.cfg.deterministic)
        data = self.prepared_data()
        self.data = data
        hw = self.rt.describe()
        self.banner = [f"Training on {hw['name']} ({hw['device']}, {hw['precision']})" + (f", {hw['world_size']} processes" if self.rt.distributed else "")]
        self.banner.append(f"Data: {data.source}: {len(data.train)} train, {len(data.val)} val" + (f", {len(data.test)} test" if data.test is not None else "") + f"; writing {self.output}")
        with _Progress(enabled=self.rt.is_main) as progress:
            self.progress = progress
            self.train_one("repr", data)
            if self.meta["baseline"]:
                self.train_one("baseline", data)

    def train_one(self, role: str, data) -> None:
        import dataclasses

        from orthocli.training import train

        output = self.output if role == "repr" else _sibling(self.output, "baseline")
        cfg = dataclasses.replace(self.cfg, baseline=role == "baseline")
        model, arch, record = self.model(data)
        if self.rt.is_main and self.banner:  # once the model is built: bad input fails silently before
            for line in self.banner:
                log(line)
            self.banner = []
        if record is not None and self.meta["baseline"]:
            raise UsageError("--baseline compares whole schedules; it does not apply to a pruned checkpoint's sub-network")
        state = _state_path(output)
        resume = self.resume and state.exists()
        if self.resume and role == "repr" and not resume:
            raise UsageError(f"{state}: no saved training state to resume")
        self.progress.start(role, cfg)
        result = train(model, data, cfg, record=record, callback=lambda e: self.on_event(role, e, arch), state_path=state, resume=resume, state_every=self.opts["state_every"], meta={**self.meta, "role": role}, runtime=self.rt)
        if self.rt.is_main:
            self.write_model(output, result, arch, cfg, role)
        self.results[role] = (result, output)

    def on_event(self, role: str, event: dict, arch) -> None:
        if event["kind"] == "epoch":
            self.progress.update(role, event)
            if self.meta["metrics"]:
                self.log_metrics(role, event)
        elif event["kind"] == "cycle":
            self.progress.cycle(role, event)
            if role == "repr" and self.meta["save_cycles"]:
                from orthocli import checkpoint as ckpt_io

                path = _sibling(self.output, f"cycle{event['cycle']}")
                sd = {k: v.detach().clone() for k, v in event["state_dict"].items()}
                ckpt_io.save(path, ckpt_io.make_payload(sd, arch=arch, config=self.resolved(), data=self.data_extras(), cycle=event["cycle"]), force=True)

    def log_metrics(self, role: str, event: dict) -> None:
        if self.metrics_file is None:  # opened at the first epoch: bad input writes nothing
            self.metrics_file = open(self.meta["metrics"], "w")
            for r, history in self.saved_history.items():  # a resumed run: what the state files hold
                self.metrics_file.writelines(_metric_line(r, e) for e in history)
        self.metrics_file.write(_metric_line(role, event))
        self.metrics_file.flush()

    # -- outputs -------------------------------------------------------------------------------
    def resolved(self) -> dict:
        """The configuration as option names -> values: enough to repeat the run (--config)."""
        m = self.meta
        doc = {"checkpoint": m["checkpoint"], "arch": m["arch_name"], **m["arch_options"], "data": m["data"], "test_data": m["test_data"], "max_samples": m["max_samples"], "threads": m.get("threads"), "device": m.get("device", "auto"), "precision": m.get("precision", "auto")}
        doc.update(self.cfg.to_dict())
        doc["baseline"] = m["baseline"]
        return doc

    def data_extras(self) -> dict:
        d = self.data
        return {"source": d.source, "mean": d.mean, "std": d.std, "num_classes": d.num_classes, "in_channels": d.in_channels, "input_shape": list(d.spatial_shape)}

    def write_model(self, output: Path, result, arch, cfg, role: str) -> None:
        from orthocli import checkpoint as ckpt_io

        sd = {k: v.detach().clone() for k, v in result.model.state_dict().items()}
        payload = ckpt_io.make_payload(
            sd, arch=arch, config=self.resolved(), history=result.history, data=self.data_extras(),
            summary=result.summary(), role=role, prune=result.record,
        )
        ckpt_io.save(output, payload, force=True)  # outputs were checked before training

    def finish(self) -> None:
        from orthocli.runtime import teardown

        teardown(self.rt)
        if not self.rt.is_main:  # only rank 0 writes and reports
            return
        if self.metrics_file is not None:
            self.metrics_file.close()
        if self.meta["plot"]:
            _plot(Path(self.meta["plot"]), {r: res.history for r, (res, _) in self.results.items()})
        for _, output in self.results.values():
            _state_path(output).unlink(missing_ok=True)
        doc = self.document()
        if self.opts["json_out"]:
            print_json(doc)
        else:
            _render(doc)

    def document(self) -> dict:
        result, output = self.results["repr"]
        doc = {**result.summary(), "output": str(output)}
        if "baseline" in self.results:
            b, b_out = self.results["baseline"]
            doc["baseline"] = {**b.summary(), "output": str(b_out)}
        doc["runtime"] = self.rt.describe()
        doc["config"] = self.resolved()
        doc["data"] = self.data_extras()
        if self.meta["metrics"]:
            doc["metrics"] = self.meta["metrics"]
        if self.meta["plot"]:
            doc["plot"] = self.meta["plot"]
        return doc


# ---------------------------------------------------------------------------------------------
# Helpers


def _default_output(arch: str) -> Path:
    name = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in arch.split(":")[-1]) or "model"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    runs = Path("runs")
    runs.mkdir(exist_ok=True)
    return runs / f"{name}-{stamp}.pt"


def _need_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'orthocli[plot]'") from None


def _from_checkpoint(meta: dict, data):
    import torch

    from orthocli import checkpoint as ckpt_io
    from orthocli.errors import CheckpointError
    from orthocli.models import arch_spec, build_model

    path = meta["checkpoint"]
    ck = ckpt_io.load(path, key=meta["key"], trust=meta["trust"])
    arch = ck.extras.get("arch")
    if arch is None and meta["arch_name"]:
        opts = {k: v for k, v in meta["arch_options"].items() if v is not None}
        arch = arch_spec(meta["arch_name"], in_channels=data.in_channels, num_classes=data.num_classes, input_shape=list(data.spatial_shape), **opts)
    ck.check_finite()
    if arch is not None:
        model = ckpt_io.load_weights(build_model(arch), ck.state_dict, path, arch)
    elif isinstance(ck.module, torch.nn.Module) and not isinstance(ck.module, torch.jit.ScriptModule):
        model = ck.module.float()
    elif ck.module is not None:
        raise CheckpointError(f"{path}: a TorchScript archive cannot be trained; start from its state dict with --arch")
    else:
        raise CheckpointError(f"{path}: records no architecture; give --arch (and its options) to build the model for these weights")
    return model, arch, ck.extras.get("prune")


def _metric_line(role: str, event: dict) -> str:
    keep = ("epoch", "phase", "cycle", "lr", "loss", "train_acc", "val_loss", "val_acc", "seconds")
    doc = {"run": role, **{k: event.get(k) for k in keep}}
    doc = {k: (None if isinstance(v, float) and v != v or v in (float("inf"), float("-inf")) else v) for k, v in doc.items()}
    return json.dumps(doc) + "\n"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _cycle_line(role: str, c: dict) -> str:
    label = "baseline" if role == "baseline" else "RePr"
    dropped = sum(c["dropped"].values())
    text = f"{label} cycle {c['cycle']}: val {_pct(c['val_before_drop'])} before drop -> {_pct(c['val_after_subnet'])} after sub-net -> {_pct(c['val_after_reinit'])} after re-init"
    if dropped:
        text += f"; {dropped} filters dropped and re-introduced"
    if c["fallbacks"]:
        text += f" ({sum(v['kept_only'] + v['random'] for v in c['fallbacks'].values())} by fallback)"
    return text


class _Progress:
    """Rich progress bar on stderr when it is a terminal (and NO_COLOR unset); otherwise one line per cycle and run."""

    PHASES = {"standard": "standard", "subnet": "sub-net", "final": "final"}

    def __init__(self, enabled: bool = True) -> None:
        self.console = stderr()
        self.quiet = not enabled  # another rank than 0: rank 0 reports
        self.enabled = enabled and self.console.is_terminal and not os.environ.get("NO_COLOR")
        self.bar = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), console=self.console,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, role: str, cfg) -> None:
        if self.bar is not None:
            self.tasks[role] = self.bar.add_task(role, total=cfg.total_epochs, stats="")

    def update(self, role: str, e: dict) -> None:
        if self.bar is None:
            return
        where = self.PHASES.get(e["phase"], e["phase"]) + (f" {e['cycle']}" if e["cycle"] else "")
        label = "RePr" if role == "repr" else "baseline"
        stats = f"loss {e['loss']:.4f}  acc {_pct(e['train_acc'])}  val {_pct(e['val_acc'])}"
        self.bar.update(self.tasks[role], completed=e["epoch"], total=e["total"], description=f"{label:8} {where:11}", stats=stats)

    def cycle(self, role: str, c: dict) -> None:
        if self.quiet:
            return
        (self.bar.console if self.bar is not None else self.console).print(_cycle_line(role, c), markup=False)


def _short_names(names: list[str]) -> dict[str, str]:
    """Layer names without the dotted prefix they all share ("features.conv2" -> "conv2")."""
    parts = [n.split(".") for n in dict.fromkeys(names)]
    common = 0
    while parts and all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return {".".join(p): ".".join(p[common:]) for p in parts}


def _render(doc: dict) -> None:
    from rich.table import Table

    out = stdout()
    if doc["cycles"]:
        table = Table(title="RePr cycles (validation accuracy)")
        for col in ("cycle", "before drop", "after S2", "after reinit", "re-introduced", "fallbacks"):
            left = col.startswith(("re-", "fall"))
            table.add_column(col, justify="left" if left else "right", overflow="fold", no_wrap=not left)
        short = _short_names([n for c in doc["cycles"] for n in c["dropped"]])
        for c in doc["cycles"]:
            per_layer = " ".join(f"{short[n]}:{k}" for n, k in c["dropped"].items()) or "-"
            fallbacks = ", ".join(f"{short.get(n, n)}: {v['kept_only']} kept-only, {v['random']} random" for n, v in c["fallbacks"].items()) or "none"
            table.add_row(str(c["cycle"]), _pct(c["val_before_drop"]), _pct(c["val_after_subnet"]), _pct(c["val_after_reinit"]), per_layer, fallbacks)
        out.print(table)
    runs = [("RePr", doc)] + ([("baseline", doc["baseline"])] if "baseline" in doc else [])
    table = Table(title="Result" + (" (same budget, seed and data order)" if len(runs) > 1 else ""))
    table.add_column("")
    for name, _ in runs:
        table.add_column(name, justify="right")
    if len(runs) > 1:
        table.add_column("difference", justify="right")
    rows = [("val accuracy", "val_accuracy"), ("test accuracy", "test_accuracy")]
    for label, k in rows:
        if k not in doc:
            continue
        values = [r.get(k) for _, r in runs]
        diff = [f"{100 * (values[0] - values[1]):+.1f} pts"] if len(runs) > 1 and None not in values else ([] if len(runs) == 1 else ["-"])
        table.add_row(label, *map(_pct, values), *diff)
    table.add_row("epochs", *(str(r["epochs"]) for _, r in runs), *([""] if len(runs) > 1 else []))
    table.add_row("output", *(r["output"] for _, r in runs), *([""] if len(runs) > 1 else []))
    out.print(table)


def _plot(path: Path, histories: dict[str, list]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orthocli import checkpoint as ckpt_io

    fig, ax = plt.subplots(figsize=(8, 4.5))
    shaded = False
    for e in histories.get("repr", []):
        if e["phase"] == "subnet":
            ax.axvspan(e["epoch"] - 1, e["epoch"], color="tab:orange", alpha=0.15, lw=0, label=None if shaded else "sub-network (S2)")
            shaded = True
    styles = {"repr": ("RePr", "tab:blue", "-"), "baseline": ("baseline (no drops)", "tab:gray", "--")}
    for role, history in histories.items():
        points = [(e["epoch"], 100 * e["val_acc"]) for e in history if e["val_acc"] is not None]
        if points:
            label, color, style = styles[role]
            ax.plot(*zip(*points), style, color=color, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    ckpt_io.atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120), force=True)
    plt.close(fig)
