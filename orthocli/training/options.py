"""The options of one `orthocli train` invocation besides its `config.TrainConfig`, in four frozen
groups (`ModelOptions`, `DataOptions`, `OutputOptions`, `HardwareOptions`), and `RunMeta`, the groups
and the run's role as a state file saves them for --resume (experiment.py runs them). No torch."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from orthocli.errors import CheckpointError
from orthocli.training.arms import CONTROLS  # noqa: F401 (--control's criteria, named here before arms.py)

# Default seconds between two saves of the training state (at the end of an epoch; the last epoch
# always): saving after every epoch of a small model would cost more than the epoch itself.
STATE_EVERY = 5.0


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
    # --arch-args: keyword arguments for a package.module:callable builder (JSON values), given as is
    arch_args: dict[str, Any] | None = None

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
    # "random": also the random-drop arm, written to OUT.random.pt (needs baseline); "random,l1,taylor":
    # one matched arm per criterion, OUT.<criterion>.pt (training/arms.py)
    control: str | None = None
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
    role: str = "repr"  # "repr" (the method), "baseline" (the control) or a matched arm's criterion ("random", ...)

    @property
    def output(self) -> Path:
        assert self.outputs.output is not None
        return self.outputs.output

    def to_dict(self) -> dict[str, Any]:
        """Every field of the four groups as a plain value, by field name (but `_SAVED_AS`; the
        architecture options nested under "arch_options"), and the role."""
        doc: dict[str, Any] = {"arch_options": {k: getattr(self.model, k) for k in _ARCH_OPTIONS}, "role": self.role}
        for group, cls in _GROUPS:
            for f in fields(cls):
                if f.name not in _ARCH_OPTIONS:
                    value = getattr(getattr(self, group), f.name)
                    doc[_SAVED_AS.get(f.name, f.name)] = str(value) if isinstance(value, Path) else value
        return doc

    def options(self) -> dict[str, Any]:
        """The groups' options that say what the run is, by option name, as a --config file and a
        checkpoint's `config` give them (--data: the built-in set's name or the path); how the run is
        kept and where its files go (`_NOT_CONFIG`) left out."""
        doc: dict[str, Any] = {}
        for group, cls in _GROUPS:
            for f in fields(cls):
                if f.name not in _NOT_CONFIG:
                    value = getattr(getattr(self, group), f.name)
                    doc[f.name] = str(value) if isinstance(value, Path) else value
        if doc["data"] is None:
            doc["data"] = self.data.builtin
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: Path) -> RunMeta:
        """The inverse of `to_dict`; CheckpointError when a key the first state files had is missing,
        or a value is of the wrong kind. A key added since is read as its field's default when absent
        (a run begun by an earlier version resumes as it was)."""
        try:
            arch_options = dict(doc["arch_options"])
            unknown = set(arch_options) - set(_ARCH_OPTIONS)
            if unknown:
                raise KeyError(", ".join(sorted(unknown)))
            arch_options["activation"] = arch_options.get("activation") or "relu"
            # state files from before named sets had no "builtin": no data was the built-in digits
            builtin = doc.get("builtin", "digits" if doc["data"] is None else None)
            groups = {
                "model": ModelOptions(**_read(ModelOptions, doc), **arch_options),
                "data": DataOptions(**_read(DataOptions, doc, builtin=builtin)),
                "outputs": OutputOptions(**_read(OutputOptions, doc)),
                "hardware": HardwareOptions(**_read(HardwareOptions, doc)),
            }
            return cls(**groups, role=doc.get("role", "repr"))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{where}: the saved options are damaged or from another version ({type(e).__name__}: {e});"
                " start the run over with --force"
            ) from None


_GROUPS = (("model", ModelOptions), ("data", DataOptions), ("outputs", OutputOptions), ("hardware", HardwareOptions))
# Not in a checkpoint's `config`: where the model's weights sit and whether its code may run (the
# checkpoint's own business), the built-in set (it is `data`), torch.compile, the output files.
_NOT_CONFIG = {"key", "trust", "builtin", "compile", "output", "save_cycles", "metrics", "plot"}
_SAVED_AS = {"arch": "arch_name"}  # the keys state files have always had, where they differ from the field
# The keys of the first state files: one of these missing means a damaged file. Every other key was
# added later and is read as its field's default when absent.
_FIRST_KEYS = {
    "output", "checkpoint", "key", "trust", "arch_name", "data", "test_data", "max_samples", "threads",
    "baseline", "save_cycles", "metrics", "plot",
}  # fmt: skip


def _read(group: type, doc: dict[str, Any], **given: Any) -> dict[str, Any]:
    """The fields of `group` (but the architecture options and `given`) from a saved `doc`: a path
    as a Path, a flag as a bool."""
    out = dict(given)
    for f in fields(group):
        if f.name in _ARCH_OPTIONS or f.name in given:
            continue
        key = _SAVED_AS.get(f.name, f.name)
        value = doc[key] if key in _FIRST_KEYS else doc.get(key, f.default)
        if value is not None and "Path" in str(f.type):
            value = Path(value)
        elif str(f.type) == "bool":
            value = bool(value)
        out[f.name] = value
    return out
