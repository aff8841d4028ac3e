"""`orthocli train`: parses the options (and --config TOML) into the typed options of
`orthocli.experiment` and `orthocli.training.TrainConfig`, hands them to `experiment.Experiment`
(which builds the model and data, trains and writes the files), and renders progress and the
summary. Training itself is `orthocli.training`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer

from orthocli.cli.common import (
    ExcludeOpt,
    ForceOpt,
    JsonOpt,
    KeyOpt,
    LayersOpt,
    OutOpt,
    TrustOpt,
    command,
    fail,
    in_panel,
    log,
    print_json,
    stderr,
    stdout,
)
from orthocli.cli.options import (
    MinKeepOpt,
    RatioOpt,
    ReinitFanOutOpt,
    ReinitScaleOpt,
    ScopeOpt,
    SkipFirstOpt,
    SkipLastOpt,
    ThresholdOpt,
)
from orthocli.config import TrainConfig
from orthocli.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, UsageError
from orthocli.experiment import STATE_EVERY

if TYPE_CHECKING:
    from orthocli.experiment import DataOptions, RedundancyNote

EPILOG = (
    "Example: orthocli train --cycles 5 --baseline -o runs/mnist1d.pt --plot runs/mnist1d.png\n\n"
    "Does the ranking matter on your data? orthocli train --data DATA --baseline --control random --seeds 10\n\n"
    "Continue an interrupted run: orthocli train -o runs/mnist1d.pt --resume"
)
# Help panels, in this order (Typer orders them by their first option in the signature)
SCHED = "Schedule"
DROP = "Which filters drop"
ARCH = "Model"
DATA = "Data"
OPT = "Optimisation"
HW = "Hardware"
OUT = "Output"

TRAIN = TrainConfig()  # read, never changed: the defaults of every option below that TrainConfig holds

# The shared options, in this command's panels
DropRatio = in_panel(RatioOpt, DROP)
DropThreshold = in_panel(ThresholdOpt, DROP)
DropScope = in_panel(ScopeOpt, DROP)
DropMinKeep = in_panel(MinKeepOpt, DROP)
DropLayers = in_panel(LayersOpt, DROP)
DropExclude = in_panel(ExcludeOpt, DROP)
DropSkipFirst = in_panel(SkipFirstOpt, DROP)
DropSkipLast = in_panel(SkipLastOpt, DROP)
DropReinitScale = in_panel(ReinitScaleOpt, DROP)
DropReinitFanOut = in_panel(ReinitFanOutOpt, DROP)
ModelKey = in_panel(KeyOpt, ARCH)
ModelTrust = in_panel(TrustOpt, ARCH)
Output = in_panel(OutOpt, OUT)
OutputForce = in_panel(ForceOpt, OUT)
OutputJson = in_panel(JsonOpt, OUT)


def _opt(*names: str, panel: str, **kw: Any) -> Any:
    return typer.Option(*names, rich_help_panel=panel, **kw)


@command
def train(
    ctx: typer.Context,
    checkpoint: Annotated[
        Optional[Path],
        typer.Argument(
            help="Start from this checkpoint (any orthocli checkpoint; a pruned one trains its sub-network for --s2"
            " epochs). Default: a new model.",
            show_default=False,
        ),
    ] = None,
    # -- schedule
    s1: Annotated[int, _opt("--s1", panel=SCHED, min=0, help="Standard epochs before each drop.")] = TRAIN.s1,
    s2: Annotated[int, _opt("--s2", panel=SCHED, min=0, help="Sub-network epochs per cycle.")] = TRAIN.s2,
    cycles: Annotated[
        int, _opt("--cycles", panel=SCHED, min=0, help="Drop / re-introduce cycles (0: plain training).")
    ] = TRAIN.cycles,
    max_epochs: Annotated[
        Optional[int],
        _opt(
            "--max-epochs",
            panel=SCHED,
            min=1,
            help="Cap on all epochs. Default: cycles*(s1+s2) + s1.",
            show_default=False,
        ),
    ] = None,
    patience: Annotated[
        int,
        _opt(
            "--patience",
            panel=SCHED,
            min=1,
            help="After the cycles: stop after this many epochs without better validation (higher accuracy, or equal"
            " accuracy and lower loss); the best weights are kept.",
        ),
    ] = TRAIN.patience,
    min_steps: Annotated[
        int,
        _opt(
            "--min-steps",
            panel=SCHED,
            min=0,
            help="Optimizer steps an epoch takes at least: on small data an epoch is then several shuffled passes,"
            " so every phase gets enough steps (0: one pass per epoch).",
        ),
    ] = TRAIN.min_steps,
    # -- which filters drop (and how they come back)
    ratio: DropRatio = None,
    threshold: DropThreshold = None,
    scope: DropScope = TRAIN.scope,
    min_keep: DropMinKeep = TRAIN.min_keep,
    layers: DropLayers = None,
    exclude: DropExclude = None,
    skip_first: DropSkipFirst = TRAIN.skip_first,
    skip_last: DropSkipLast = TRAIN.skip_last,
    reinit_scale: DropReinitScale = TRAIN.reinit_scale,
    reinit_fan_out: DropReinitFanOut = TRAIN.reinit_fan_out,
    # -- model
    arch: Annotated[
        Optional[str],
        _opt(
            "--arch",
            panel=ARCH,
            help="convnet | resnet20 | package.module:callable (called with in_channels, num_classes, input_shape"
            " and the options below it accepts). Default: convnet.",
            show_default=False,
        ),
    ] = None,
    width: Annotated[
        Optional[int],
        _opt(
            "--width",
            panel=ARCH,
            min=1,
            help="Filters per conv layer (resnet20: of the first stage). Default: 32 convnet, 16 resnet20.",
            show_default=False,
        ),
    ] = None,
    depth: Annotated[
        Optional[int], _opt("--depth", panel=ARCH, min=1, help="convnet: conv blocks. Default: 3.", show_default=False)
    ] = None,
    kernel: Annotated[
        Optional[int], _opt("--kernel", panel=ARCH, min=1, help="convnet: kernel size. Default: 3.", show_default=False)
    ] = None,
    pool: Annotated[
        Optional[Literal["max", "avg", "none"]],
        _opt("--pool", panel=ARCH, help="convnet: pooling after each block. Default: max.", show_default=False),
    ] = None,
    batchnorm: Annotated[
        Optional[bool],
        _opt(
            "--batchnorm/--no-batchnorm",
            panel=ARCH,
            help="convnet: BatchNorm after each conv. Default: no.",
            show_default=False,
        ),
    ] = None,
    activation: Annotated[
        Literal["relu", "sigmoid", "tanh", "leaky_relu", "gelu", "silu"],
        _opt(
            "--activation",
            panel=ARCH,
            help="Activation (sigmoid: the patent's). Built-in models start He-normal, Xavier-normal for"
            " sigmoid/tanh; a callable keeps its own init.",
        ),
    ] = "relu",
    loss: Annotated[
        Literal["ce", "mse"],
        _opt("--loss", panel=ARCH, help="ce: cross-entropy; mse: the patent's E = 1/2 sum (softmax - one-hot)^2."),
    ] = TRAIN.loss,
    key: ModelKey = None,
    trust: ModelTrust = False,
    # -- data
    data: Annotated[
        Optional[str],
        _opt(
            "--data",
            panel=DATA,
            help="Training data: a built-in set by name, mnist1d (the default) or digits; or a .npz/.pt/.safetensors"
            " file with x, y (read whole), an image folder, a CIFAR-10 binary or MNIST IDX folder (streamed). A bare"
            " name is the built-in set even where a file of that name exists: write ./NAME for the file.",
            show_default=False,
        ),
    ] = None,
    test_data: Annotated[
        Optional[Path],
        _opt(
            "--test-data", panel=DATA, help="Separate test set (replaces one stored with --data).", show_default=False
        ),
    ] = None,
    val_fraction: Annotated[
        float,
        _opt(
            "--val-fraction",
            panel=DATA,
            min=0.0,
            max=0.9,
            help="Part of the training data held out for validation and early stopping.",
        ),
    ] = TRAIN.val_fraction,
    max_samples: Annotated[
        Optional[int],
        _opt(
            "--max-samples",
            panel=DATA,
            min=1,
            help="Use at most this many training samples (stratified).",
            show_default=False,
        ),
    ] = None,
    image_size: Annotated[
        Optional[int],
        _opt(
            "--image-size",
            panel=DATA,
            min=1,
            help="Image folder: resize each image (shorter side) to N and centre-crop it to NxN. Default: the images'"
            " own size, which must be the same for all.",
            show_default=False,
        ),
    ] = None,
    augment: Annotated[
        bool,
        _opt(
            "--augment",
            panel=DATA,
            help="Augment training images: random crop padded by 1/8 of the size (4 px at 32x32) and horizontal flip,"
            " seeded by --seed. Off by default.",
        ),
    ] = False,
    workers: Annotated[
        Optional[int],
        _opt(
            "--workers",
            panel=DATA,
            min=0,
            help="Loader processes reading streamed data (0: in the training process). Default: the CPU cores per"
            " training process, at most 4.",
            show_default=False,
        ),
    ] = None,
    in_memory: Annotated[
        bool,
        _opt(
            "--in-memory",
            panel=DATA,
            help="Read a folder (images, CIFAR-10, MNIST) whole into memory instead of streaming it: faster when it"
            " fits. Array files are always read whole.",
        ),
    ] = False,
    # -- optimisation
    optimizer: Annotated[
        Literal["sgd", "adam"], _opt("--optimizer", panel=OPT, help="sgd (with momentum) or adam.")
    ] = TRAIN.optimizer,
    lr: Annotated[
        Optional[float],
        _opt("--lr", panel=OPT, min=0.0, help="Peak learning rate. Default: 0.01 sgd, 0.001 adam.", show_default=False),
    ] = None,
    momentum: Annotated[float, _opt("--momentum", panel=OPT, min=0.0, help="SGD momentum.")] = TRAIN.momentum,
    weight_decay: Annotated[float, _opt("--weight-decay", panel=OPT, min=0.0, help="L2 penalty.")] = TRAIN.weight_decay,
    schedule: Annotated[
        Literal["cosine", "step", "none"],
        _opt(
            "--schedule",
            panel=OPT,
            help="Learning rate over all epochs: constant, cosine, or step (x0.1 at 50% and 75%). Decaying leaves"
            " the last re-introduced filters little lr to recover.",
        ),
    ] = TRAIN.lr_schedule,
    batch_size: Annotated[int, _opt("--batch-size", panel=OPT, min=1, help="Mini-batch size.")] = TRAIN.batch_size,
    seed: Annotated[
        int, _opt("--seed", panel=OPT, help="Seeds model init, validation split, data order and re-initialisation.")
    ] = TRAIN.seed,
    seeds: Annotated[
        Optional[int],
        _opt(
            "--seeds",
            panel=OPT,
            min=1,
            help="With --baseline: N (RePr, control) pairs with seeds --seed .. --seed+N-1, written to OUT.seed<k>.pt and"
            " OUT.seed<k>.baseline.pt (and OUT.seed<k>.random.pt); reports each arm's mean and sd, the mean paired"
            " difference with its 95% CI, wins, and a verdict.",
            show_default=False,
        ),
    ] = None,
    deterministic: Annotated[
        bool,
        _opt(
            "--deterministic",
            panel=OPT,
            help="Deterministic algorithms only (exactly repeatable, also across --resume).",
        ),
    ] = False,
    # -- hardware
    device: Annotated[
        str,
        _opt(
            "--device",
            panel=HW,
            help="auto | cpu | cuda | cuda:N | mps. auto: the GPU when there is one (under torchrun, each process"
            " its own).",
        ),
    ] = "auto",
    precision: Annotated[
        str,
        _opt(
            "--precision",
            panel=HW,
            help="auto | fp32 | bf16 | fp16: autocast precision of the forward pass (CUDA only; fp16 with a gradient"
            " scaler). auto: bf16 on a CUDA GPU that has it, else fp32.",
        ),
    ] = "auto",
    compile: Annotated[
        bool,
        _opt(
            "--compile",
            panel=HW,
            help="Run the model through torch.compile (the default backend), the method and the control alike;"
            " the masks are compiled in, and a drop or re-introduction recompiles nothing.",
        ),
    ] = False,
    threads: Annotated[
        Optional[int],
        _opt(
            "--threads",
            panel=HW,
            min=1,
            help="CPU threads for torch. Default: torch's choice (for small models 1 is often fastest).",
            show_default=False,
        ),
    ] = None,
    jobs: Annotated[
        Optional[int],
        _opt(
            "--jobs",
            "-j",
            panel=HW,
            min=1,
            envvar="ORTHOCLI_JOBS",
            help="Worker processes training runs side by side (--baseline's arms, --seeds' seeds), each run's results"
            " bit-identical to --jobs 1 with the same --threads. Default: one per free CPU core (at most the runs),"
            " each with cores/jobs threads unless --threads is given; --jobs 1: one after another in this process.",
            show_default=False,
        ),
    ] = None,
    devices: Annotated[
        Optional[str],
        _opt(
            "--devices",
            panel=HW,
            help="With --jobs: the workers' devices, round robin: all (every visible GPU) or cuda:0,cuda:1,...;"
            " default: --device for every run.",
            show_default=False,
        ),
    ] = None,
    # -- output
    output: Output = None,
    force: OutputForce = False,
    baseline: Annotated[
        bool,
        _opt(
            "--baseline",
            panel=OUT,
            help="Also train a control with the same budget, seed and data order, dropping nothing; compare side"
            " by side.",
        ),
    ] = False,
    control: Annotated[
        Optional[Literal["random"]],
        _opt(
            "--control",
            panel=OUT,
            help="With --baseline: also train a third arm that drops, in every cycle, as many filters per layer as the"
            " RePr run, chosen at random (seeded), and re-introduces them the same way, written to OUT.random.pt: is"
            " it the ranking that helps, or dropping and re-introducing any filters?",
            show_default=False,
        ),
    ] = None,
    save_cycles: Annotated[
        bool, _opt("--save-cycles", panel=OUT, help="Also write OUT.cycle<k>.pt after each re-introduction.")
    ] = False,
    metrics: Annotated[
        Optional[Path],
        _opt("--metrics", panel=OUT, help="Write one JSON line per epoch to this file.", show_default=False),
    ] = None,
    plot: Annotated[
        Optional[Path],
        _opt(
            "--plot",
            panel=OUT,
            help="Plot validation accuracy per epoch, and each candidate layer's mean score against random filters',"
            " for every arm, to this PNG (needs matplotlib: pip install 'orthocli\\[plot]').",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Optional[Path],
        _opt(
            "--config",
            panel=OUT,
            help="Read options from a TOML file (keys as the long option names, e.g. max_epochs = 50);"
            " command-line flags win.",
            show_default=False,
        ),
    ] = None,
    state_every: Annotated[
        float,
        _opt(
            "--state-every",
            panel=OUT,
            min=0.0,
            help="Seconds between saves of the training state for --resume (at the end of an epoch; 0: every epoch).",
        ),
    ] = STATE_EVERY,
    resume: Annotated[
        bool,
        _opt(
            "--resume",
            panel=OUT,
            help="Continue the interrupted run that writes -o OUT (from OUT.state, with its saved options).",
        ),
    ] = False,
    json_out: OutputJson = False,
) -> None:
    """Train with the RePr schedule: train, drop redundant filters, train the sub-network, re-introduce them
    orthogonally, repeat."""
    if config is not None:  # once more, with the file's values for the options not given on the command line
        return train(ctx, **{**ctx.params, **_from_toml(ctx, config), "config": None})
    from orthocli.experiment import (
        Experiment,
        HardwareOptions,
        ModelOptions,
        OutputOptions,
        Reporter,
        state_path,
    )

    reporter: Reporter = _Progress()
    hardware = HardwareOptions(device=device, precision=precision, threads=threads, compile=compile)
    if resume and seeds is None:
        run = Experiment.resumed(_path(output), hardware=hardware, state_every=state_every, reporter=reporter)
    else:
        cfg = TrainConfig(
            s1=s1,
            s2=s2,
            cycles=cycles,
            max_epochs=max_epochs,
            patience=patience,
            min_steps=min_steps,
            ratio=ratio,
            threshold=threshold,
            scope=scope,
            min_keep=min_keep,
            layers=list(layers or []),
            exclude=list(exclude or []),
            skip_first=skip_first,
            skip_last=skip_last,
            optimizer=optimizer,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_schedule=schedule,
            batch_size=batch_size,
            loss=loss,
            seed=seed,
            deterministic=deterministic,
            val_fraction=val_fraction,
            baseline=baseline,
            reinit_scale=reinit_scale,
            reinit_fan_out=reinit_fan_out,
        )
        options = dict(
            model=ModelOptions(
                checkpoint=_path(checkpoint),
                key=key,
                trust=trust,
                arch=arch,
                width=width,
                depth=depth,
                kernel=kernel,
                pool=pool,
                batchnorm=batchnorm,
                activation=activation,
            ),
            data=_data_options(
                data,
                reporter,
                test_data=_path(test_data),
                max_samples=max_samples,
                image_size=image_size,
                augment=augment,
                workers=workers,
                in_memory=in_memory,
            ),
            outputs=OutputOptions(
                output=_path(output),
                baseline=baseline,
                control=control,
                save_cycles=save_cycles,
                metrics=_path(metrics),
                plot=_path(plot),
            ),
            hardware=hardware,
            force=force,
            state_every=state_every,
            reporter=reporter,
        )
        from orthocli.cli.train_parallel import devices_option, resolve_jobs

        chosen = devices_option(devices)
        arms = 1 + baseline + (control is not None)
        if seeds is not None:
            jobs = resolve_jobs(jobs, runs=seeds * arms, devices=chosen)
            return _train_seeds(cfg, seeds, resume=resume, json_out=json_out, jobs=jobs, devices=chosen, **options)
        writer = "--metrics" if metrics else "--plot" if plot else None
        if chosen and (writer or not baseline):
            raise UsageError(
                f"--devices spreads runs side by side; {writer} is written by one process: use --device"
                if writer
                else "--devices spreads the runs of --baseline or --seeds; one run trains on --device"
            )
        if baseline and (chosen or resolve_jobs(jobs, runs=arms, devices=chosen, one_process_only=writer) > 1):
            return _train_arms(
                cfg, json_out, jobs=resolve_jobs(jobs, runs=arms, devices=chosen), devices=chosen, **options
            )
        run = Experiment.fresh(cfg, **options)
    try:
        run.train_all()
    except KeyboardInterrupt:
        if state_path(run.output).exists():
            fail(f"interrupted; continue with: orthocli train -o {run.output} --resume", EXIT_INTERRUPTED)
        fail(
            f"interrupted before the first state was saved (every {state_every:g} s); nothing to resume",
            EXIT_INTERRUPTED,
        )
    doc = run.close()
    if doc is None:  # not rank 0
        return
    if json_out:
        print_json(doc)
    else:
        _render(doc)
    if run.diverged:  # the results are out; the exit code says a run was lost
        lost = " and ".join(_THE_ARM[r] for r in run.diverged)
        fail(f"{lost} diverged (the loss stopped being finite; see above); lower --lr", EXIT_DIVERGED)


_THE_ARM = {"repr": "the RePr run", "baseline": "the control", "random": "the random-drop arm"}
_COLUMN = {"repr": "RePr", "baseline": "control", "random": "random"}  # the arms' columns in tables


def _train_arms(cfg: TrainConfig, json_out: bool, **options: Any) -> None:
    """The experiment's arms side by side (`train_parallel`), rendered and ended as one after another."""
    from orthocli.cli.train_parallel import arms_document, fail_failed

    doc, diverged, failed = arms_document(cfg, **options)
    if json_out:
        print_json(doc)
    else:
        _render(doc)
    fail_failed(failed)
    if diverged:
        lost = " and ".join(_THE_ARM[r] for r in diverged)
        fail(f"{lost} diverged (the loss stopped being finite; see above); lower --lr", EXIT_DIVERGED)


def _train_seeds(
    cfg: TrainConfig, n: int, *, resume: bool, json_out: bool, jobs: int, devices: list[str] | None, **options: Any
) -> None:
    """--seeds N: the pairs one after another (--jobs 1) or side by side, then the per-seed table and
    the paired summary."""
    from orthocli.paired_runs import run_seeds

    if jobs > 1 or devices:
        from orthocli.cli.train_parallel import seeds_document

        doc = seeds_document(cfg, n, resume=resume, jobs=jobs, devices=devices, **options)
    else:
        try:
            doc = run_seeds(cfg, n, resume=resume, **options)
        except KeyboardInterrupt:
            fail("interrupted; continue with the same command and --resume (finished seeds are kept)", EXIT_INTERRUPTED)
    if json_out:
        print_json(doc)
    else:
        _render_seeds(doc)
    from orthocli.cli.train_parallel import fail_failed

    fail_failed(doc["failed"])
    if doc["diverged"]:
        lost = ", ".join(f"seed {d['seed']} {_COLUMN[d['run']]}" for d in doc["diverged"])
        fail(f"runs diverged ({lost}); they are left out of the summary; lower --lr", EXIT_DIVERGED)


def _render_seeds(doc: dict) -> None:
    from rich.table import Table

    out = stdout()
    roles = ["repr", "baseline"] + (["random"] if any("random" in row for row in doc["seeds"]) else [])
    table = Table(title="Per seed: test accuracy (val accuracy)")
    for col in ("seed", *(_COLUMN[r] for r in roles)):
        table.add_column(col, justify="right")
    pairs = [(a, b) for _, a, b in _comparisons(roles)]
    for a, b in pairs:
        table.add_column(f"{_COLUMN[a]} - {_COLUMN[b]}" if len(pairs) > 1 else "difference", justify="right")

    def cell(r: dict) -> str:
        if "failed" in r:
            return "failed"
        if "diverged" in r:
            return f"diverged in epoch {r['diverged']['epoch']}"
        if "skipped" in r:
            return "not trained"
        return f"{_pct(r.get('test_accuracy'))} ({_pct(r.get('val_accuracy'))})"

    def diff(m: dict, c: dict) -> str:
        both = "test_accuracy" in m and "test_accuracy" in c
        return f"{100 * (m['test_accuracy'] - c['test_accuracy']):+.1f} pts" if both else "-"

    for row in doc["seeds"]:
        table.add_row(str(row["seed"]), *(cell(row[r]) for r in roles), *(diff(row[a], row[b]) for a, b in pairs))
    out.print(table)
    summary = doc["summary"]
    first = summary.get("repr_vs_control", {})
    table = Table(title=f"Over {summary['pairs']} seeds: mean ± sd (%)")
    for col in ("", "test accuracy", "val accuracy"):
        table.add_column(col, justify="right", no_wrap=True)
    arms = {"repr": ("repr_vs_control", "method"), "baseline": ("repr_vs_control", "control")}
    if "random" in roles:
        arms["random"] = ("random_vs_control", "method")
    for role, (key, side) in arms.items():
        cells = []
        for metric in ("test_accuracy", "val_accuracy"):
            p = summary.get(key, first).get(metric)
            cells.append("-" if p is None else f"{100 * p[side]['mean']:.2f} ± {100 * p[side]['sd']:.2f}")
        table.add_row(_COLUMN[role], *cells)
    out.print(table)
    table = Table(title="Paired by seed: first arm minus second (pts), its 95% CI, and wins")
    for col in ("", "", "difference [95% CI]", "wins"):
        table.add_column(col, justify="right", no_wrap=True)
    for key, a, b in _comparisons(roles):
        for label, metric in (("test", "test_accuracy"), ("val", "val_accuracy")):
            p = summary.get(key, {}).get(metric)
            if p is None:
                continue
            ci = "" if p["ci_low"] is None else f" [{100 * p['ci_low']:+.2f}, {100 * p['ci_high']:+.2f}]"
            table.add_row(
                f"{_COLUMN[a]} - {_COLUMN[b]}", label, f"{100 * p['mean_difference']:+.2f}{ci}", f"{p['wins']}/{p['n']}"
            )
    out.print(table)
    out.print(summary["verdict"], markup=False)


def _comparisons(roles: list[str]) -> list[tuple[str, str, str]]:
    from orthocli.paired_runs import COMPARISONS

    return [c for c in COMPARISONS if c[1] in roles and c[2] in roles]


# ---------------------------------------------------------------------------------------------
# Options from TOML


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _data_options(data: str | None, reporter, **options: Any) -> DataOptions:
    """--data as a built-in set's name (the default set when not given) or a path; `options`: the
    other fields of DataOptions."""
    from orthocli.data import DEFAULT_DATA, builtin_name
    from orthocli.experiment import DataOptions

    name = DEFAULT_DATA if data is None else builtin_name(data)
    if data is not None and name is not None and Path(data).exists():
        reporter.log(f"--data {data} is the built-in set; for the file or folder of that name write ./{data}")
    return DataOptions(data=None if name is not None else Path(data), builtin=name, **options)


def _from_toml(ctx: typer.Context, path: Path) -> dict[str, Any]:
    """The values the file at `path` gives for options not given on the command line, by parameter
    name, checked by the options' own parsers; UsageError for an unreadable file, an unknown key or
    a bad value."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise UsageError(
                "--config needs Python 3.11, or the tomli package on Python 3.10: pip install tomli"
            ) from None
    try:
        table = tomllib.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"--config {path}: cannot read it ({e.strerror or e})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"--config {path}: not valid TOML ({e})") from None
    params = {p.name: p for p in ctx.command.params}
    out = {}
    for raw, value in table.items():
        name = {"json": "json_out"}.get(raw.replace("-", "_"), raw.replace("-", "_"))
        if name not in params or name == "config":
            known = ", ".join(sorted(n for n in params if n != "config"))
            raise UsageError(f"--config {path}: unknown option '{raw}'; the options are: {known}")
        if _given(ctx, name):
            continue  # given on the command line (or in the environment): the flag wins
        try:
            out[name] = params[name].process_value(ctx, value)
        except Exception as e:  # the parser's own check of the value (choices, ranges, types)
            raise UsageError(f"--config {path}: bad value for '{raw}': {getattr(e, 'message', e)}") from None
    return out


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option `name`. Compared by the source's name, never by importing click's
    enum: Typer >= 0.24 carries its own copy of click, and an installed click's enum never equals it."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _cycle_line(role: str, c: dict) -> str:
    label = _LABEL[role]
    dropped = sum(c["dropped"].values())
    text = (
        f"{label} cycle {c['cycle']}: val {_pct(c['val_before_drop'])} before drop"
        f" -> {_pct(c['val_after_subnet'])} after sub-net -> {_pct(c['val_after_reinit'])} after re-init"
    )
    if dropped:
        text += f"; {dropped} filters dropped and re-introduced" + (" (random ones)" if role == "random" else "")
    elif role == "random":
        text += "; no filter dropped (the RePr run dropped none in this cycle)"
    elif role != "baseline":
        text += "; no filter dropped (the rule chose none: the whole network trained)"
    if c["fallbacks"]:
        text += f" ({sum(v['kept_only'] + v['random'] for v in c['fallbacks'].values())} by fallback)"
    unknown = [n for n, r in (c.get("reintroduced") or {}).items() if r.get("fan_out") == "unknown"]
    if unknown:
        text += f"; the output changed at re-introduction (what reads {', '.join(unknown)} is not known)"
    return text


_LABEL = {"repr": "RePr", "baseline": "baseline", "random": "random"}  # progress and cycle lines


def _redundancy_lines(note: RedundancyNote) -> list[str]:
    """What `train` says of the method's candidate layers against random filters (experiment.RedundancyNote)."""
    report = note.report
    if note.when == "start":
        head = "Redundancy before training (candidate layers: mean filter score against random filters of their shape)"
        if note.new_model and note.first_drop_epoch:
            epochs = f"{note.first_drop_epoch} epoch" + ("s" if note.first_drop_epoch != 1 else "")
            head += f"; a new model starts at random filters, the first drop reads them after {epochs}"
    else:
        head = f"Redundancy at cycle 1's drop (after epoch {note.epoch})"
    lines = [head + ":"]
    for layer in report.layers:
        ratio = "" if layer.ratio is None else f" ({layer.ratio:.2f}x)"
        drops = "" if layer.drops is None else f"; the default rule drops {layer.drops} of {layer.filters}"
        lines.append(f"  {layer.name}: mean {layer.mean:.3f}, random filters {layer.chance:.3f}{ratio}{drops}")
    # a new model's filters start random: only the trained ones say whether there is anything to drop
    if report.nothing_to_drop and not (note.when == "start" and note.new_model and note.first_drop_epoch):
        where = "from these weights" if note.when == "start" else "in cycle 1"
        lines.append(
            f"No candidate layer is redundant enough: the default rule drops nothing {where}, and while that holds"
            " the RePr run trains as the control does. Give --ratio to drop anyway."
        )
    return lines


class _Progress:
    """The `experiment.Reporter` of the CLI: a Rich progress bar on stderr when it is a terminal (and NO_COLOR
    unset); otherwise one line per cycle and run."""

    PHASES = {"standard": "standard", "subnet": "sub-net", "final": "final"}

    def __init__(self) -> None:
        self.console = stderr()
        self.quiet = False  # set on ranks other than 0: rank 0 reports
        self.bar = None
        self.tasks: dict[str, Any] = {}
        self.told_start = False  # the layers before training are told once per command (--seeds: once, not N times)

    def log(self, text: str) -> None:
        if not self.quiet:
            log(text)

    def __enter__(self) -> _Progress:
        if not self.quiet and self.console.is_terminal and not os.environ.get("NO_COLOR"):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, role: str, cfg: TrainConfig) -> None:
        if self.bar is not None:
            self.tasks[role] = self.bar.add_task(role, total=cfg.total_epochs, stats="")

    def update(self, role: str, event: dict) -> None:
        e = event
        if self.bar is None:
            return
        where = self.PHASES.get(e["phase"], e["phase"]) + (f" {e['cycle']}" if e["cycle"] else "")
        label = _LABEL[role]
        stats = f"loss {e['loss']:.4f}  acc {_pct(e['train_acc'])}  val {_pct(e['val_acc'])}"
        self.bar.update(
            self.tasks[role], completed=e["epoch"], total=e["total"], description=f"{label:8} {where:11}", stats=stats
        )

    def cycle(self, role: str, entry: dict) -> None:
        if self.quiet:
            return
        (self.bar.console if self.bar is not None else self.console).print(_cycle_line(role, entry), markup=False)

    def redundancy(self, note: RedundancyNote) -> None:
        if self.quiet or (note.when == "start" and self.told_start):
            return
        self.told_start = self.told_start or note.when == "start"
        for line in _redundancy_lines(note):
            (self.bar.console if self.bar is not None else self.console).print(line, markup=False)


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
    if doc.get("cycles"):
        table = Table(title="RePr cycles (validation accuracy)")
        for col in ("cycle", "before drop", "after S2", "after reinit", "re-introduced", "fallbacks"):
            left = col.startswith(("re-", "fall"))
            table.add_column(col, justify="left" if left else "right", overflow="fold", no_wrap=not left)
        short = _short_names([n for c in doc["cycles"] for n in c["dropped"]])
        for c in doc["cycles"]:
            per_layer = " ".join(f"{short[n]}:{k}" for n, k in c["dropped"].items()) or "-"
            fallbacks = (
                ", ".join(
                    f"{short.get(n, n)}: {v['kept_only']} kept-only, {v['random']} random"
                    for n, v in c["fallbacks"].items()
                )
                or "none"
            )
            table.add_row(
                str(c["cycle"]),
                _pct(c["val_before_drop"]),
                _pct(c["val_after_subnet"]),
                _pct(c["val_after_reinit"]),
                per_layer,
                fallbacks,
            )
        out.print(table)
    arms = {"repr": doc, **{r: doc[r] for r in ("baseline", "random") if r in doc}}
    runs = [(_LABEL[r], a) for r, a in arms.items()]
    pairs = [(a, b) for _, a, b in _comparisons(list(arms))]
    table = Table(title="Result" + (" (same budget, seed and data order)" if len(runs) > 1 else ""))
    table.add_column("")
    for name, _ in runs:
        table.add_column(name, justify="right")
    for a, b in pairs:
        table.add_column(f"{_LABEL[a]} - {_LABEL[b]}" if len(pairs) > 1 else "difference", justify="right")
    rows = [("val accuracy", "val_accuracy"), ("test accuracy", "test_accuracy")]
    for label, k in rows:
        if not any(k in r for _, r in runs):
            continue
        diffs = [
            f"{100 * (arms[a][k] - arms[b][k]):+.1f} pts"
            if arms[a].get(k) is not None and arms[b].get(k) is not None
            else "-"
            for a, b in pairs
        ]
        table.add_row(label, *(_pct(r.get(k)) for _, r in runs), *diffs)

    def epochs(r: dict) -> str:
        if "failed" in r:
            return "failed"
        if "diverged" in r:
            return f"diverged in {r['diverged']['epoch']}"
        return "not trained" if "skipped" in r else str(r["epochs"])

    table.add_row("epochs", *(epochs(r) for _, r in runs), *([""] * len(pairs)))
    table.add_row("output", *(r["output"] or "-" for _, r in runs), *([""] * len(pairs)))
    out.print(table)
