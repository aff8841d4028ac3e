"""The options of one `orthocli train` invocation besides its `config.TrainConfig`, in four frozen
groups (`ModelOptions`, `DataOptions`, `OutputOptions`, `HardwareOptions`), and `RunMeta`, the groups
and the run's role as a state file saves them for --resume (experiment.py runs them). No torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orthocli.errors import CheckpointError

# Default seconds between two saves of the training state (at the end of an epoch; the last epoch
# always): saving after every epoch of a small model would cost more than the epoch itself.
STATE_EVERY = 5.0
CONTROLS = ("random",)  # --control choices: the third arm's ranking


@dataclass(frozen=True)
class ModelOptions:
    """Which model trains: a new one of `arch`, or the one in `checkpoint`."""

    checkpoint: Path | None = None  # start from this checkpoint; None: a new model
    key: str | None = None  # where the state dict sits in a wrapping dict (checkpoint)
    trust: bool = False  # allow unpickling a whole module from the checkpoint
    arch: str | None = None  # convnet | resnet20 | package.module:callable; None: convnet, or the checkpoint's
    # Architecture options, None where not given (the architecture's own default applies)
    width: int | None = None  # filters per conv layer (resnet20: of the first stage)
    depth: int | None = None  # convnet: conv blocks
    kernel: int | None = None  # convnet: kernel size
    pool: str | None = None  # convnet: "max", "avg" or "none" after each block
    batchnorm: bool | None = None  # convnet: BatchNorm after each conv
    activation: str = "relu"

    def arch_options(self) -> dict[str, Any]:
        """The architecture options given, by name (what `models.arch_spec` takes)."""
        return {k: getattr(self, k) for k in _ARCH_OPTIONS if getattr(self, k) is not None}


_ARCH_OPTIONS = ("width", "depth", "kernel", "pool", "batchnorm", "activation")


@dataclass(frozen=True)
class DataOptions:
    """Where the samples come from (the validation split is `TrainConfig.val_fraction`)."""

    data: Path | None = None  # training data from a file or folder; None: the built-in set `builtin`
    builtin: str | None = None  # a built-in set by name (data.BUILTIN_SETS); None with no `data`: the default
    test_data: Path | None = None  # a separate test set
    max_samples: int | None = None  # use at most this many training samples (stratified)
    image_size: int | None = None  # an image folder's images resized and centre-cropped to this
    augment: bool = False  # random crop (padded) and horizontal flip of training images
    workers: int | None = None  # loader processes for streamed data; None: data.default_workers()
    in_memory: bool = False  # read a folder whole into memory instead of streaming it


@dataclass(frozen=True)
class OutputOptions:
    """The files an experiment writes."""

    output: Path | None = None  # the trained model; None: runs/<arch>-<time>.pt
    baseline: bool = False  # also train the control, written to OUT.baseline.pt
    control: str | None = None  # "random": also the random-drop arm, written to OUT.random.pt (needs baseline)
    save_cycles: bool = False  # also write OUT.cycle<k>.pt after each re-introduction
    metrics: Path | None = None  # one JSON line per epoch
    plot: Path | None = None  # validation accuracy per epoch (PNG)


@dataclass(frozen=True)
class HardwareOptions:
    """Where it trains; a resumed run may move, so these are taken anew on --resume."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast of the forward pass)
    threads: int | None = None  # torch's CPU threads; None: torch's choice
    compile: bool = False  # torch.compile the model (method and control alike), after RePr's hooks


@dataclass(frozen=True)
class RunMeta:
    """What an experiment is besides its TrainConfig: saved in its state files, so --resume repeats
    it. Stored as plain values (`to_dict`) under the keys state files have always had."""

    model: ModelOptions
    data: DataOptions
    outputs: OutputOptions  # with `output` resolved (never None)
    hardware: HardwareOptions
    role: str = "repr"  # "repr" (the method), "baseline" (the control) or "random": which run a state file is

    @property
    def output(self) -> Path:
        assert self.outputs.output is not None
        return self.outputs.output

    def to_dict(self) -> dict[str, Any]:
        m, d, o, h = self.model, self.data, self.outputs, self.hardware
        path = lambda p: None if p is None else str(p)  # noqa: E731
        return {
            "output": str(o.output),
            "checkpoint": path(m.checkpoint),
            "key": m.key,
            "trust": m.trust,
            "arch_name": m.arch,
            "arch_options": {k: getattr(m, k) for k in _ARCH_OPTIONS},
            "data": path(d.data),
            "builtin": d.builtin,
            "test_data": path(d.test_data),
            "max_samples": d.max_samples,
            "image_size": d.image_size,
            "augment": d.augment,
            "workers": d.workers,
            "in_memory": d.in_memory,
            "threads": h.threads,
            "compile": h.compile,
            "baseline": o.baseline,
            "control": o.control,
            "save_cycles": o.save_cycles,
            "metrics": path(o.metrics),
            "plot": path(o.plot),
            "device": h.device,
            "precision": h.precision,
            "role": self.role,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: Path) -> RunMeta:
        """The inverse of `to_dict`; CheckpointError when a key is missing or of the wrong kind."""
        path = lambda p: None if p is None else Path(p)  # noqa: E731
        try:
            arch_options = dict(doc["arch_options"])
            unknown = set(arch_options) - set(_ARCH_OPTIONS)
            if unknown:
                raise KeyError(", ".join(sorted(unknown)))
            return cls(
                model=ModelOptions(
                    checkpoint=path(doc["checkpoint"]),
                    key=doc["key"],
                    trust=bool(doc["trust"]),
                    arch=doc["arch_name"],
                    **{**arch_options, "activation": arch_options.get("activation") or "relu"},
                ),
                # state files from before named sets had no "builtin": no data was the built-in digits
                data=DataOptions(
                    data=path(doc["data"]),
                    builtin=doc.get("builtin", "digits" if doc["data"] is None else None),
                    test_data=path(doc["test_data"]),
                    max_samples=doc["max_samples"],
                    # absent from the state files of runs begun before streaming: their defaults
                    image_size=doc.get("image_size"),
                    augment=bool(doc.get("augment", False)),
                    workers=doc.get("workers"),
                    in_memory=bool(doc.get("in_memory", False)),
                ),
                outputs=OutputOptions(
                    output=Path(doc["output"]),
                    baseline=bool(doc["baseline"]),
                    control=doc.get("control"),  # absent before --control
                    save_cycles=bool(doc["save_cycles"]),
                    metrics=path(doc["metrics"]),
                    plot=path(doc["plot"]),
                ),
                hardware=HardwareOptions(
                    doc.get("device", "auto"), doc.get("precision", "auto"), doc["threads"], bool(doc.get("compile"))
                ),
                role=doc.get("role", "repr"),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{where}: the saved options are damaged or from another version ({type(e).__name__}: {e});"
                " start the run over with --force"
            ) from None
