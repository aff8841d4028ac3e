"""Typed errors. Each carries the process exit code the CLI uses; the table is in the README."""

from __future__ import annotations

import re
from collections.abc import Callable

# Exit codes, one per kind of failure, so scripts can tell them apart.
EXIT_OK = 0
EXIT_GATE_FAILED = 1  # `score --fail-above`: the checkpoint is more redundant than allowed
EXIT_USAGE = 2  # a bad option or argument (Typer/Click uses 2 as well)
EXIT_INPUT = 3  # the input file cannot be read as a checkpoint
EXIT_CHECKPOINT = 4  # it reads, but its content is unusable for the command
EXIT_OUTPUT = 5  # the output cannot or must not be written
EXIT_TRUST = 6  # loading would run code from the file and --trust was not given
EXIT_DATA = 7  # training or test data cannot be used
EXIT_DIVERGED = 8  # training diverged (the loss stopped being finite); with --baseline the other run is kept
EXIT_INTERNAL = 70  # a bug in orthocli (EX_SOFTWARE)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_BROKEN_PIPE = 141  # stdout was closed early (`| head`): 128 + SIGPIPE, what a shell reports for `cat`

# What a user without PyTorch installs to get it (the README's set-up installs a build first instead).
TORCH_INSTALL = "pip install 'orthocli[torch]'"


class OrthoError(Exception):
    """Base of every error orthocli reports to the user as one line."""

    exit_code = EXIT_INTERNAL


class UsageError(OrthoError):
    exit_code = EXIT_USAGE


class NeedsTorch(UsageError):
    """The command, or the file it was given, needs PyTorch, which is not installed here."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs PyTorch, which is not installed: {TORCH_INSTALL}")


class ReadWithTorch(Exception):
    """Not a user error: a file that torch.load(weights_only=True) reads but orthocli's own readers
    do not (float8 or quantized tensors, tensor subclasses); numpy_checkpoint.py has torch read it."""


class InputFileError(OrthoError):
    exit_code = EXIT_INPUT


class OptionError(UsageError):
    """A bad option of the method or of training. The message names options as `{field}` (the
    dataclass field): `str(e)` reads them as the library's parameters ("ratio must be ..."), and
    the CLI renders them as its flags ("--ratio must be ...") with `render`."""

    def __init__(self, template: str) -> None:
        self.template = template
        super().__init__(render_options(template, lambda name: name))

    def render(self, name: Callable[[str], str]) -> str:
        return render_options(self.template, name)


_OPTION = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def render_options(text: str, name: Callable[[str], str]) -> str:
    """`text` with every `{field}` replaced by `name(field)`."""
    return _OPTION.sub(lambda m: name(m.group(1)), text)


class CheckpointError(OrthoError):
    exit_code = EXIT_CHECKPOINT


class OutputError(OrthoError):
    exit_code = EXIT_OUTPUT


class TrustError(OrthoError):
    exit_code = EXIT_TRUST


class DataError(OrthoError):
    exit_code = EXIT_DATA


class Diverged(OrthoError):
    """The training loss stopped being finite: in which epoch (1-based), phase and cycle."""

    exit_code = EXIT_DIVERGED

    def __init__(self, epoch: int, phase: str, cycle: int | None) -> None:
        self.epoch, self.phase, self.cycle = epoch, phase, cycle
        where = f"{phase} phase" + (f" of cycle {cycle}" if cycle is not None else "")
        super().__init__(f"training diverged in epoch {epoch} ({where}): the loss is not finite; lower --lr")

    def to_dict(self) -> dict:
        return {"epoch": self.epoch, "phase": self.phase, "cycle": self.cycle, "message": str(self)}


def first_line(e: BaseException, limit: int = 160) -> str:
    """An exception's message cut to its first line, for a one-line error; its type's name where
    the message is empty (`str(e).splitlines()[0]` raises IndexError there)."""
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]
