"""The export formats: one writer and one reader each, in one table (`TABLE`). A writer gives the
file's bytes (pipeline.py writes them and checks the file); a reader loads a written file back as
(runnable module or None, state dict or None, orthocli extras) for that check. What each format
holds: pipeline.py's docstring and docs/commands.md ("export")."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli import __version__
from orthocli.errors import CheckpointError, UsageError, first_line
from orthocli.trees import map_tree


@dataclass
class ExportSpec:
    """What is exported: the module to run and trace, the tensors to write, the extras."""

    model: Any  # the exported model (compact, masked or plain), None without an architecture
    state_dict: dict
    arch: dict | None
    expected: torch.Tensor | None  # its output on the probe batch


# --- orthocli's extras, as the formats carry them -----------------------------------------------


def _jsonable(obj: Any) -> Any:
    """Tensors as lists, NaN and Inf as None, anything else not JSON as its str."""

    def leaf(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.tolist()
        if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
            return None
        return x if x is None or isinstance(x, (bool, int, float, str)) else str(x)

    return map_tree(obj, leaf)


def prune_summary(extras: dict) -> dict | None:
    """The drop record without the saved tensors: rule and dropped filter indices per layer."""
    record = extras.get("prune")
    if not record:
        return extras.get("prune_summary")
    layers = {n: {"dropped": layer["dropped"].tolist()} for n, layer in record.get("layers", {}).items()}
    return {"rule": _jsonable(record.get("rule")), "layers": layers}


def metadata(extras: dict, arch: dict | None, compact: dict | None) -> dict[str, str]:
    """safetensors metadata: {"orthocli": one JSON document}."""
    doc = {
        "format_version": ckpt_io.FORMAT_VERSION,
        "orthocli_version": __version__,
        "arch": arch,
        "data": extras.get("data"),
        "prune_summary": None if compact else prune_summary(extras),
        "compact": compact,
    }
    doc = {k: v for k, v in _jsonable(doc).items() if v is not None}
    return {ckpt_io.FORMAT_NAME: json.dumps(doc, allow_nan=False, sort_keys=True)}


def _plain(state_dict: dict) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in state_dict.items()}


def module_of(model, output) -> Any:
    """The Python model an orthocli export keeps (pickled, read back with --trust) where no
    architecture rebuilds it: a trusted pickled source's, to a torch file (safetensors holds no code)."""
    if isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule):
        return None if ckpt_io.writes_safetensors(output) else model
    return None


def _payload(ckpt, spec: ExportSpec, compact_doc: dict | None, output) -> dict:
    """An orthocli checkpoint of the exported weights: the source's extras, the new architecture;
    a compact one drops the drop record (its filter indices no longer exist) and records how it
    was made under "compact". A model no architecture describes travels whole (`module_of`)."""
    extras = {k: v for k, v in ckpt.extras.items() if k not in ("format", "format_version")}
    if compact_doc is not None:
        extras.pop("prune", None)
        extras["compact"] = compact_doc
    if spec.arch is not None:
        extras["arch"] = spec.arch
    elif ckpt.module is not None:
        extras["module"] = module_of(spec.model, output)
    if ckpt.extras.get("format") != ckpt_io.FORMAT_NAME:  # as `orthocli prune` records a foreign input
        extras.setdefault("source", {"path": str(ckpt.path), "format": ckpt.format, "key": ckpt.key})
    return ckpt_io.make_payload(_plain(spec.state_dict), **extras)


# --- writers: (spec, source checkpoint, compact record, probe batch, output name) -> the file's bytes


def _write_safetensors(spec: ExportSpec, ckpt, compact_doc: dict | None, probe, output) -> bytes:
    from safetensors.torch import save

    return save(_plain(spec.state_dict), metadata=metadata(ckpt.extras, spec.arch, compact_doc))


def _write_pt(spec: ExportSpec, ckpt, compact_doc: dict | None, probe, output) -> bytes:
    buf = io.BytesIO()
    torch.save(_plain(spec.state_dict), buf)
    return buf.getvalue()


def _write_orthocli(spec: ExportSpec, ckpt, compact_doc: dict | None, probe, output) -> bytes:
    buf = io.BytesIO()
    ckpt_io.writer(_payload(ckpt, spec, compact_doc, output), output)(buf)  # safetensors or torch zip, by the name
    return buf.getvalue()


def _write_pt2(spec: ExportSpec, ckpt, compact_doc: dict | None, probe, output) -> bytes:
    buf = io.BytesIO()
    torch.export.save(_exported_program(spec.model, probe), buf)
    return buf.getvalue()


def _write_torchscript(spec: ExportSpec, ckpt, compact_doc: dict | None, probe, output) -> bytes:
    buf = io.BytesIO()
    # torch 2.9+ marks TorchScript deprecated (the CLI says so once); it still loads on older runtimes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(_script(spec.model, probe), buf)
    return buf.getvalue()


def _write_onnx(spec: ExportSpec, ckpt, compact_doc: dict | None, probe, output) -> bytes:
    return _onnx_bytes(spec.model, probe)


def _script(model, probe: torch.Tensor):
    if isinstance(model, torch.jit.ScriptModule):
        return model
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(model, probe)
    except Exception as e:
        raise CheckpointError(f"cannot trace the model for TorchScript ({first_line(e, 200)})") from None


def _batch_dim() -> dict:
    """The first input's dimension 0 is the batch: any size at run time, not the probe's."""
    return {0: torch.export.Dim("batch")}


def _exported_program(model, probe: torch.Tensor):
    try:
        with warnings.catch_warnings(), _quiet("torch.export"):
            warnings.simplefilter("ignore")
            return torch.export.export(model, (probe,), dynamic_shapes=(_batch_dim(),), strict=False)
    except Exception as e:
        raise CheckpointError(f"cannot export the model with torch.export ({first_line(e, 200)})") from None


def _onnx_bytes(model, probe: torch.Tensor) -> bytes:
    try:
        # The exporter prints progress on stdout, which is the command's result: send it to stderr.
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings(), _quiet("torch.onnx"):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (probe,),
                dynamo=True,
                input_names=["input"],
                output_names=["output"],
                dynamic_shapes=(_batch_dim(),),
                verbose=False,
            )
    except Exception as e:
        raise CheckpointError(f"cannot export the model to ONNX ({first_line(e, 200)})") from None
    return program.model_proto.SerializeToString()


@contextlib.contextmanager
def _quiet(logger: str):
    import logging

    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


# --- readers: (a written file, trust) -> (runnable module or None, state dict or None, orthocli extras)
# `trust`: the file may hold the pickled model (`_payload`), as its source did.


def _read_checkpoint(path: Path, trust: bool) -> tuple[Any, dict | None, dict]:
    """Read as any checkpoint is (checkpoint.py)."""
    ckpt = ckpt_io.load(path, trust=trust)
    return (ckpt.module.eval() if ckpt.module is not None else None), ckpt.state_dict, ckpt.extras


def _read_torchscript(path: Path, trust: bool) -> tuple[Any, dict | None, dict]:
    return ckpt_io.load(path, trust=True).module.eval(), None, {}  # the file this command just wrote, not the user's


def _read_pt2(path: Path, trust: bool) -> tuple[Any, dict | None, dict]:
    # from a buffer: torch.export.load goes by the name, and the temporary file's ends in .part
    return torch.export.load(io.BytesIO(path.read_bytes())).module(), None, {}


def _read_onnx(path: Path, trust: bool) -> tuple[Any, dict | None, dict]:
    return _OnnxRunner(path), None, {}


class _OnnxRunner:
    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime

            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.name = self.session.get_inputs()[0].name
        except ImportError:
            from onnx.reference import ReferenceEvaluator

            self.session = ReferenceEvaluator(str(path))
            self.name = self.session.input_names[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.name: x.numpy()})[0])


# --- the table --------------------------------------------------------------------------------


def require_onnx() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"ONNX export needs the optional extra: pip install 'orthocli[onnx]' ({' and '.join(missing)} not "
            "installed)"
        )


@dataclass(frozen=True)
class Format:
    name: str  # --format
    suffixes: tuple[str, ...]  # the output names that choose it without --format
    write: Callable[..., bytes]
    read: Callable[[Path, bool], tuple[Any, dict | None, dict]]
    needs_model: bool = False  # holds the model's code, not only its weights
    dynamic_batch: bool = False  # exported with a dynamic batch dimension
    requires: Callable[[], None] | None = None  # UsageError when an optional extra is missing


TABLE = {
    f.name: f
    for f in (
        Format("safetensors", (".safetensors",), _write_safetensors, _read_checkpoint),
        Format("pt", (".pt", ".pth", ".bin"), _write_pt, _read_checkpoint),
        Format("pt2", (".pt2",), _write_pt2, _read_pt2, needs_model=True, dynamic_batch=True),
        Format("torchscript", (".ts", ".jit", ".torchscript"), _write_torchscript, _read_torchscript, needs_model=True),
        Format(
            "onnx", (".onnx",), _write_onnx, _read_onnx, needs_model=True, dynamic_batch=True, requires=require_onnx
        ),
        Format("orthocli", (), _write_orthocli, _read_checkpoint),
    )
}
FORMATS = tuple(TABLE)
SUFFIXES = {suffix: f.name for f in TABLE.values() for suffix in f.suffixes}
