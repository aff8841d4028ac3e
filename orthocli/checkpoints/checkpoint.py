"""Reading and writing checkpoints. The only module that touches checkpoint files.

Reads, with no model class needed: torch.save files (zip and legacy pickle), dicts wrapping a
state dict (Lightning, training scripts), safetensors, and -- only when the user trusts the file --
TorchScript archives and whole pickled nn.Modules (loading either runs code the file holds); the
format is told by the content, never the name. Writes orthocli checkpoints atomically (atomic.py), as a torch.save zip or, with a
.safetensors name, as safetensors (layout: safetensors_layout.py). Building the model a checkpoint
records, and what it says of the model, is model.py's job.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orthocli.errors import CheckpointError, InputFileError, TrustError, first_line
from orthocli.formats import sniff
from orthocli.trees import map_tree

if TYPE_CHECKING:
    import torch

FORMAT_NAME = "orthocli"
FORMAT_VERSION = 1

# Keys that training scripts and frameworks use for the model's weights, most specific first.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "network", "weights", "params")


@dataclass
class Checkpoint:
    path: Path
    format: str  # torch-zip | torch-legacy | safetensors | torchscript | module
    state_dict: dict[str, torch.Tensor]
    module: Any = None  # the nn.Module / ScriptModule when the file holds one
    extras: dict = field(default_factory=dict)  # orthocli's own entries: arch, masks, config, history
    key: str | None = None  # where the state dict sat inside a wrapping dict

    def check_finite(self) -> None:
        """Refuse NaN or Inf weights before training or exporting them (score reports per layer)."""
        import torch

        for key, t in self.state_dict.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise CheckpointError(
                    f"{self.path}: '{key}' holds NaN or Inf values; the checkpoint is damaged or its training diverged"
                )


def check_readable(path: Path) -> None:
    """Raise InputFileError for a path that is not a readable, non-empty file."""
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory; give the checkpoint file inside it")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{path}: permission denied")
    if path.stat().st_size == 0:
        raise InputFileError(f"{path}: file is empty; it is not a checkpoint")


def checkpoint_format(path: Path) -> str:
    """The checkpoint format of a file's content (`formats.sniff`); InputFileError for one that is not."""
    kind = sniff(path)
    if kind == "lfs-pointer":
        raise InputFileError(f"{path}: this is a Git LFS pointer, not the checkpoint; run git lfs pull to fetch it")
    if kind == "damaged-zip":
        raise InputFileError(f"{path}: damaged or truncated zip archive; re-save or re-download it")
    if kind == "pt2":
        raise InputFileError(
            f"{path}: a torch.export program (.pt2, as 'orthocli export --format pt2' writes), which orthocli does "
            "not read; give the checkpoint it was exported from"
        )
    if kind in ("npz", "zip"):
        raise InputFileError(f"{path}: a zip archive, but not one written by torch.save or torch.jit.save")
    if kind not in ("torchscript", "torch-zip", "safetensors", "torch-legacy"):
        raise InputFileError(
            f"{path}: not a checkpoint; expected a torch.save file, a .safetensors file or a TorchScript archive"
        )
    return kind


def _read_as_score_does(path: Path, fmt: str, trust: bool) -> bool:
    """Read the file with `score`'s own reader first (numpy_checkpoint.py's: bounded, and refusing
    what is ambiguous or crafted), so that every command accepts and refuses what `score` does
    and torch is never handed a file that would crash or exhaust it (a tuple nested a million deep
    overflows torch's unpickler too). Returns whether the zip records are all stored, uncompressed:
    only then does torch's mmap path read the values (on a deflated record it returns the
    compressed bytes). What only torch reads (ReadWithTorch), and pickled objects with --trust,
    go on to torch."""
    from orthocli.errors import ReadWithTorch

    stored = True
    if fmt == "torch-zip":
        import zipfile

        import orthocli.checkpoints.readers.zip_records as zip_records

        try:
            with zipfile.ZipFile(path) as archive:
                stored = zip_records.check(path, archive).stored
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
            raise InputFileError(f"{path}: damaged or truncated zip archive ({first_line(e, 100)})") from None
    try:
        if fmt == "torch-zip":
            import orthocli.checkpoints.readers.zip as zip_checkpoint

            zip_checkpoint.read(path)
        elif fmt == "torch-legacy":
            import orthocli.checkpoints.readers.legacy as legacy_checkpoint

            legacy_checkpoint.read(path)
    except ReadWithTorch:
        pass
    except TrustError:
        if not trust:
            raise
    return stored


def _torch_load(path: Path, fmt: str, trust: bool) -> Any:
    import pickle

    import torch

    stored = _read_as_score_does(path, fmt, trust)
    # torch.load reads a path ending in .safetensors as safetensors, whatever it holds: a torch file
    # under that name is given as an open file (which cannot be memory-mapped) so that content decides.
    by_name = str(path).endswith(".safetensors")
    try:
        with warnings.catch_warnings(), open(path, "rb") if by_name else contextlib.nullcontext(path) as source:
            warnings.simplefilter("ignore", UserWarning)  # a damaged file makes torch warn before it fails
            mmap = fmt == "torch-zip" and not by_name and stored
            return torch.load(source, map_location="cpu", weights_only=not trust, mmap=mmap or None)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg:
            if fmt == "torch-legacy" and not _pickles_parse(path):
                raise InputFileError(
                    f"{path}: damaged or truncated checkpoint (its pickled data is cut short or corrupt); "
                    "re-save or re-download it"
                ) from None
            found = re.search(r"GLOBAL ([\w.]+)", msg) or re.search(r"Unsupported (?:global|operand)\W+([\w.]+)", msg)
            what = f" ({found.group(1)})" if found else ""
            raise TrustError(
                f"{path}: holds pickled Python objects{what}; loading it would run code from the file. "
                "If you trust where it came from, rerun with --trust"
            ) from None
        raise InputFileError(f"{path}: damaged or truncated checkpoint ({first_line(e)})") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError) as e:
        if trust and (isinstance(e, (AttributeError, ModuleNotFoundError)) or _raised_importing(e)):
            raise CheckpointError(
                f"{path}: the pickled model needs code that is not importable here ({first_line(e)})"
            ) from None
        raise InputFileError(f"{path}: damaged or truncated checkpoint ({first_line(e)})") from None
    except Exception as e:
        if trust:  # unpickling with --trust can raise anything the file's code raises
            raise CheckpointError(f"{path}: loading the trusted pickle failed ({first_line(e)})") from None
        # The weights-only unpickler runs no code, so anything else it raises means a malformed
        # file (torch itself raises AssertionError on some corrupt legacy files).
        raise InputFileError(f"{path}: damaged or truncated checkpoint ({type(e).__name__}: {first_line(e)})") from None


def _raised_importing(e: BaseException) -> bool:
    """Whether `e` came from importing the code a pickle names (a package whose import fails here,
    as a CUDA torchvision beside a CPU torch does), not from reading the file."""
    import traceback

    return any(frame.name == "find_class" for frame in traceback.extract_tb(e.__traceback__))


def _pickles_parse(path: Path) -> bool:
    """Whether the pickles a legacy torch.save file starts with (magic number, protocol, system
    info, the object) parse to their end, without running anything. A file cut inside a class name
    ("torch.Fl") otherwise reads as "needs --trust" rather than as damaged."""
    import pickletools

    with open(path, "rb") as f:
        for _ in range(4):
            if not f.peek(1):  # a plain pickle holds one
                break
            try:
                for _op in pickletools.genops(f):
                    pass
            except Exception:
                return False
    return True


def _is_torch_tensor(v: Any) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def _is_module(v: Any) -> bool:
    torch = sys.modules.get("torch")  # a module can only be there where torch read the file
    return torch is not None and isinstance(v, torch.nn.Module)


def _tensor_dicts(obj: Any, is_tensor: Callable, prefix: str = "", depth: int = 0) -> Iterable[tuple[str, dict]]:
    """Every str-keyed dict (up to 3 levels down) that holds tensors, with its dotted key."""
    if depth > 3 or not isinstance(obj, dict):
        return
    if any(is_tensor(v) for v in obj.values()):
        yield prefix, obj
    for k, v in obj.items():
        if isinstance(k, str) and isinstance(v, dict):
            yield from _tensor_dicts(v, is_tensor, f"{prefix}.{k}" if prefix else k, depth + 1)
        elif isinstance(k, str) and _is_module(v):
            yield (f"{prefix}.{k}" if prefix else k), v


def _conv_keys(d: Any, is_tensor: Callable) -> set:
    if _is_module(d):
        d = d.state_dict()
    return {k for k, t in d.items() if is_tensor(t) and str(k).endswith("weight") and 3 <= t.ndim <= 5}


def _only_tensors(d: dict, is_tensor: Callable) -> dict:
    return {k: v for k, v in d.items() if isinstance(k, str) and is_tensor(v)}


def unwrap(obj: Any, path: Path, fmt: str, key: str | None, is_tensor: Callable[[Any], bool] = _is_torch_tensor):
    """The Checkpoint of an unpickled object: an orthocli checkpoint, a state dict, a wrapper holding
    one (found by --key, a well-known key, or being the only one with conv weights), or a module.
    `is_tensor` says what a tensor is: torch's, or the numpy arrays of numpy_checkpoint.py."""
    if _is_module(obj):
        return Checkpoint(path, "module", obj.state_dict(), module=obj)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict or model")
    if obj.get("format") == FORMAT_NAME:
        extras = {k: v for k, v in obj.items() if k not in ("state_dict", "module")}
        module = obj.get("module") if _is_module(obj.get("module")) else None  # `module_for`: read with --trust
        return Checkpoint(path, fmt, _only_tensors(obj.get("state_dict", {}), is_tensor), extras=extras, module=module)
    if key is not None:
        node: Any = obj
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                found = ", ".join(k for k, _ in _tensor_dicts(obj, is_tensor) if k) or "none"
                raise CheckpointError(f"{path}: no key '{key}'; keys holding tensors: {found}")
            node = node[part]
        if _is_module(node):
            return Checkpoint(path, "module", node.state_dict(), module=node, key=key)
        if not isinstance(node, dict) or not _only_tensors(node, is_tensor):
            raise CheckpointError(f"{path}: '{key}' holds no tensors; choose another --key")
        return Checkpoint(path, fmt, _only_tensors(node, is_tensor), key=key)
    found = list(_tensor_dicts(obj, is_tensor))
    if not found:
        raise CheckpointError(f"{path}: holds no tensors; it is not a model checkpoint")
    with_conv = [(k, d) for k, d in found if _is_module(d) or _conv_keys(d, is_tensor)]
    choices = with_conv or found
    if len(choices) > 1:
        # A wrapper with one well-known key beside optimizer state and the like is not ambiguous;
        # beside another copy of the same layers (an EMA, a teacher) it is: the user must choose.
        named = [(k, d) for k, d in choices if k.split(".")[-1] in _WRAPPER_KEYS]
        if len(named) == 1:
            layers = _conv_keys(named[0][1], is_tensor)
            if not (layers and any(_conv_keys(d, is_tensor) == layers for k, d in choices if k != named[0][0])):
                choices = named
    if len(choices) > 1:
        names = ", ".join(repr(k or "<top level>") for k, _ in choices)
        raise CheckpointError(f"{path}: holds several state dicts ({names}); choose one with --key")
    k, d = choices[0]
    if _is_module(d):
        return Checkpoint(path, "module", d.state_dict(), module=d, key=k)
    return Checkpoint(path, fmt, _only_tensors(d, is_tensor), key=k or None)


def _load_safetensors(path: Path) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    import orthocli.checkpoints.readers.safetensors as safetensors_reader
    from orthocli.errors import ReadWithTorch

    with contextlib.suppress(ReadWithTorch):  # `score`'s reader first: every command refuses what it refuses
        safetensors_reader.read(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputFileError(f"{path}: damaged or truncated safetensors file ({first_line(e)})") from None
    from orthocli.checkpoints.safetensors_layout import decode

    state, extras = decode(state, meta, path)
    return Checkpoint(path, "safetensors", state, extras=extras)


def torchscript_refusal(path: Path) -> TrustError:
    """The error for a TorchScript archive read without --trust: torch.jit.load runs the code the
    archive holds (its methods and `__setstate__`, which can write any file the user can)."""
    return TrustError(
        f"{path}: a TorchScript archive; loading it runs code the file holds (its methods and __setstate__). "
        "If you trust where it came from, rerun with --trust"
    )


def _load_torchscript(path: Path) -> Checkpoint:
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.9+ marks jit.load deprecated; the files still exist
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError, OSError) as e:
        raise InputFileError(f"{path}: damaged TorchScript archive ({first_line(e)})") from None
    return Checkpoint(path, "torchscript", dict(module.state_dict()), module=module)


def load(path: str | os.PathLike, *, key: str | None = None, trust: bool = False) -> Checkpoint:
    """Read any supported checkpoint. Nothing from the file runs unless `trust` is set: without it a
    TorchScript archive or a pickle of Python objects is a TrustError (exit 6)."""
    p = Path(path)
    check_readable(p)
    fmt = checkpoint_format(p)
    if fmt == "safetensors":
        ckpt = _load_safetensors(p)
    elif fmt == "torchscript":
        if not trust:
            raise torchscript_refusal(p)
        ckpt = _load_torchscript(p)
    else:
        ckpt = unwrap(_torch_load(p, fmt, trust), p, fmt, key)
    for name, t in ckpt.state_dict.items():  # torch reads tensors without values (meta); nothing can use them
        if getattr(t, "is_meta", False):
            raise InputFileError(f"{p}: '{str(name)[:80]}' is a tensor on the meta device, without values")
    return ckpt


# ---------------------------------------------------------------------------------------------
# Writing


def make_payload(state_dict: dict, **extras: Any) -> dict:
    """An orthocli checkpoint: a plain dict that torch.load(weights_only=True) reads. The weights
    sit under "state_dict" with their original names; the rest describes how they were made."""
    payload = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "state_dict": state_dict}
    payload.update({k: v for k, v in extras.items() if v is not None})
    return payload


def module_for(ckpt: Checkpoint, output: str | os.PathLike, state_dict: dict | None = None) -> Any:
    """The Python module (a trusted pickled nn.Module) `ckpt` holds, with `state_dict` loaded, to
    travel as the "module" entry of an orthocli checkpoint written to `output`: a model that no
    recorded architecture rebuilds keeps its code, so `export --compact` can still build it (the
    file then needs --trust, as its source did). None where there is none, or for a .safetensors
    output, which holds no code."""
    import torch

    module = ckpt.module
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        return None
    if writes_safetensors(output) or ckpt.extras.get("arch"):
        return None
    if state_dict is not None:
        module.load_state_dict(state_dict)
    return module


def save(path: str | os.PathLike, payload: dict, *, force: bool = False, inputs=()) -> Path:
    """Write an orthocli checkpoint atomically, in the format its name asks for (`writes_safetensors`);
    tensors are moved to the CPU first, so a file written on a GPU loads anywhere."""
    from orthocli.atomic import atomic_write

    return atomic_write(path, writer(payload, path), force=force, inputs=inputs)


def writes_safetensors(path: str | os.PathLike) -> bool:
    """Whether `save` writes `path` as safetensors: a name ending in .safetensors (and the training
    state file OUT.safetensors.state beside OUT.safetensors). Anything else, .pt and .pth included,
    gets torch.save's zip archive. Readers never go by the name: `load` looks at the content."""
    name = Path(path).name.lower()
    return name.endswith(".safetensors") or name.endswith(".safetensors.state")


def writer(payload: dict, path: str | os.PathLike) -> Callable[[Any], None]:
    """The function that writes `payload` into an open binary file, as `save` would for `path`."""
    import torch

    cpu_payload = _to_cpu(payload)
    if writes_safetensors(path):
        from orthocli.checkpoints.safetensors_layout import encode

        data = encode(cpu_payload)  # before the file is opened: a payload it cannot hold writes nothing
        return lambda f: f.write(data)
    return lambda f: torch.save(cpu_payload, f)


def _to_cpu(obj: Any) -> Any:
    import torch

    def leaf(x: Any) -> Any:
        return x.detach().cpu() if isinstance(x, torch.Tensor) and x.device.type != "cpu" else x

    return map_tree(obj, leaf)
