"""`orthocli train`: parses the options (and --config TOML) into the typed options of
`orthocli.training.options` and `orthocli.config.TrainConfig`, hands them to
`orthocli.training.experiment.Experiment` (which builds the model and data, trains and writes the
files), and renders progress and the summary. Training itself is `orthocli.training.loop`."""

from __future__ import annotations

from dataclasses import fields
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
    output_folder,
    print_json,
)
from orthocli.cli.config_file import config_option, from_toml
from orthocli.cli.options import (
    MinKeepOpt,
    RatioOpt,
    ReinitFanOutOpt,
    ReinitScaleOpt,
    ScopeOpt,
    SkipFirstOpt,
    SkipLastOpt,
    ThresholdOpt,
    config_from,
)
from orthocli.cli.train_render import COLUMN, Progress, render, render_seeds
from orthocli.config import TrainConfig
from orthocli.errors import EXIT_DIVERGED, EXIT_INTERRUPTED, UsageError
from orthocli.training.options import STATE_EVERY

if TYPE_CHECKING:
    from orthocli.training.options import DataOptions

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
# Each option is spelled once, in config.py or training/options.py, and given a parameter of the
# same name below (a TrainConfig field by its option name: --schedule is lr_schedule); the command
# builds the typed options from the parameters by name. A test checks both ways (a field without a
# parameter, a parameter that is no field and not one of these).
TRAIN_OPTIONS = [name for name in TRAIN.to_dict() if name != "ranking"]  # ranking: each arm's own
COMMAND_ONLY = (
    "config",
    "state_every",
    "resume",
    "seeds",
    "jobs",
    "devices",
    "force",
    "json_out",
)  # how it runs, not what

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
ConfigFile = in_panel(config_option("max_epochs = 50"), OUT)


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
            help="convnet | resnet20 | package.module:callable (called with those of in_channels, num_classes,"
            " input_shape and the options below that it names as parameters, and --arch-args). Default: convnet.",
            show_default=False,
        ),
    ] = None,
    arch_args: Annotated[
        Optional[list[str]],
        _opt(
            "--arch-args",
            panel=ARCH,
            help="KEY=VALUE (repeatable): a keyword argument for the --arch builder, VALUE read as JSON where it"
            " is (10, 0.5, true, [1,2]), else as text; e.g. --arch-args num_classes=10. A builder's **kwargs gets"
            " only these.",
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
        Optional[str],
        _opt(
            "--control",
            panel=OUT,
            help="With --baseline: also train a third arm that drops, in every cycle, as many filters per layer as the"
            " RePr run, chosen at random (seeded), and re-introduces them the same way, written to OUT.random.pt: is"
            " it the ranking that helps, or dropping and re-introducing any filters? Several criteria, comma"
            " separated, one matched arm each (OUT.<criterion>.pt): random, least, l1, bn-scale, taylor, activation"
            " (--control random,l1,taylor).",
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
    config: ConfigFile = None,
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
        return train(ctx, **{**ctx.params, **from_toml(ctx, config), "config": None})
    args = {name: value for name, value in locals().items() if name != "ctx"}  # the parameters, by name
    from orthocli.network.models import parse_arch_args
    from orthocli.training.experiment import Experiment, Reporter, state_path
    from orthocli.training.options import HardwareOptions, ModelOptions, OutputOptions

    reporter: Reporter = Progress()
    hardware = _group(HardwareOptions, args)
    if resume and seeds is None:
        run = Experiment.resumed(_path(output), hardware=hardware, state_every=state_every, reporter=reporter)
    else:
        cfg = config_from(TrainConfig, args)
        options = dict(
            model=_group(ModelOptions, args, arch_args=parse_arch_args(arch_args)),
            data=_data_options(args, reporter),
            outputs=_group(OutputOptions, args),
            hardware=hardware,
            force=force,
            state_every=state_every,
            reporter=reporter,
        )
        for path in (output, metrics, plot):  # a missing folder is created, as the default runs/ is
            output_folder(path)
        from orthocli.cli.train_parallel import devices_option, resolve_jobs

        chosen = devices_option(devices)
        from orthocli.training.arms import control_arms

        arms = 1 + baseline + len(control_arms(control))
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
        render(doc)
    if run.diverged:  # the results are out; the exit code says a run was lost
        lost = " and ".join(_THE_ARM[r] for r in run.diverged)
        fail(f"{lost} diverged (the loss stopped being finite; see above); lower --lr", EXIT_DIVERGED)


class _TheArm(dict):
    def __missing__(self, role: str) -> str:
        return f"the {role} arm"


_THE_ARM = _TheArm({"repr": "the RePr run", "baseline": "the control", "random": "the random-drop arm"})


def _train_arms(cfg: TrainConfig, json_out: bool, **options: Any) -> None:
    """The experiment's arms side by side (`train_parallel`), rendered and ended as one after another."""
    from orthocli.cli.train_parallel import arms_document, fail_failed

    doc, diverged, failed = arms_document(cfg, **options)
    if json_out:
        print_json(doc)
    else:
        render(doc)
    fail_failed(failed)
    if diverged:
        lost = " and ".join(_THE_ARM[r] for r in diverged)
        fail(f"{lost} diverged (the loss stopped being finite; see above); lower --lr", EXIT_DIVERGED)


def _train_seeds(
    cfg: TrainConfig, n: int, *, resume: bool, json_out: bool, jobs: int, devices: list[str] | None, **options: Any
) -> None:
    """--seeds N: the pairs one after another (--jobs 1) or side by side, then the per-seed table and
    the paired summary."""
    from orthocli.training.paired_runs import run_seeds

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
        render_seeds(doc)
    from orthocli.cli.train_parallel import fail_failed

    fail_failed(doc["failed"])
    if doc["diverged"]:
        lost = ", ".join(f"seed {d['seed']} {COLUMN[d['run']]}" for d in doc["diverged"])
        fail(f"runs diverged ({lost}); they are left out of the summary; lower --lr", EXIT_DIVERGED)


# ---------------------------------------------------------------------------------------------
# The typed options


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _data_options(args: dict[str, Any], reporter) -> DataOptions:
    """`DataOptions` from the parameters: --data as a built-in set's name (the default set when not
    given) or a path."""
    from orthocli.data import DEFAULT_DATA, builtin_name
    from orthocli.training.options import DataOptions

    data = args["data"]
    name = DEFAULT_DATA if data is None else builtin_name(data)
    if data is not None and name is not None and Path(data).exists():
        reporter.log(f"--data {data} is the built-in set; for the file or folder of that name write ./{data}")
    return _group(DataOptions, args, data=None if name is not None else Path(data), builtin=name)


def _group(cls: type, args: dict[str, Any], **computed: Any) -> Any:
    """An option group (a frozen dataclass) from the parameters of the same names; `computed`: the
    fields that are no parameter of their own (or not as given)."""
    values = {f.name: _value(args[f.name], f.type) for f in fields(cls) if f.name not in computed}
    return cls(**values, **computed)


def _value(value: Any, annotation: Any) -> Any:
    """A parameter's value as its field holds it: a path as a Path (a --config file gives a str)."""
    if "Path" in str(annotation) and value is not None:
        return Path(value)
    return value
