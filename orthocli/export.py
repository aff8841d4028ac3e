"""Exporting a checkpoint for deployment, each file checked by loading it back once.

Formats (`--format`, else from the output's extension):

- safetensors (.safetensors): the plain state dict, the same keys as the model's `state_dict()`,
  so it loads with `load_state_dict(strict=True)` into the model class. orthocli's extras
  (architecture, data statistics, a summary of dropped filters, orthocli's version) are one JSON
  document in the file's metadata under "orthocli", never tensors.
- pt (.pt, .pth, .bin): `torch.save` of the same plain state dict, nothing else.
- pt2 (.pt2): `torch.export`'s ExportedProgram of the model (masks included), with a dynamic
  batch dimension, written by `torch.export.save`; loads with `torch.export.load(path).module()`.
  The format for today's PyTorch (2.x).
- torchscript (.ts, .jit, .torchscript): the model traced (`torch.jit.trace`) on a probe batch.
  PyTorch marks TorchScript deprecated (its calls warn); it stays for older runtimes and libtorch.
- onnx (.onnx): `torch.onnx.export` (dynamo exporter, dynamic batch); the optional extra
  `pip install 'orthocli[onnx]'`.
- orthocli (never from the extension): an orthocli checkpoint (architecture, config, history;
  a torch.save zip, or safetensors when the output's name ends in .safetensors, as every command
  writes them), the one to use for a compact model that `orthocli score` and `orthocli train`
  should rebuild.

A pruned checkpoint (with a drop record) exported without --compact: its dropped filters are
zero in the weights (conv weight and bias, BatchNorm weight and bias), so a plain state dict is
the sub-network wherever zero stays zero; an activation with f(0) != 0 (sigmoid) after them
still leaks, which the export reports (`masked_max_abs_diff`). TorchScript and ONNX export the
masked model (masks included), so they are the sub-network exactly; so does pt2. With --compact the dropped
filters are removed (see `compact.py`) and the compact model must match the masked one within
COMPACT_TOL.

Verification: the written file (still under a temporary name) is loaded once -- the state dict
into a freshly built model, the ExportedProgram with torch.export.load, the TorchScript archive
with torch.jit.load, the ONNX file with
onnxruntime or onnx's reference evaluator -- and run on a seeded probe batch of the input shape;
its output must be within VERIFY_TOL of the source. Otherwise nothing is written (exit 4).
Without a model or an input shape, a state dict is verified tensor by tensor.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from orthocli import __version__
from orthocli import checkpoint as ckpt_io
from orthocli.atomic import atomic_write, check_output
from orthocli.checkpoint_model import CheckpointModel
from orthocli.errors import CheckpointError, UsageError, first_line
from orthocli.trees import map_tree

FORMATS = ("safetensors", "pt", "pt2", "torchscript", "onnx", "orthocli")
SUFFIXES = {
    ".safetensors": "safetensors",
    ".pt": "pt",
    ".pth": "pt",
    ".bin": "pt",
    ".pt2": "pt2",
    ".ts": "torchscript",
    ".jit": "torchscript",
    ".torchscript": "torchscript",
    ".onnx": "onnx",
}
VERIFY_TOL = 1e-4  # max abs difference between the loaded file's output and the source model's
COMPACT_TOL = 1e-5  # max abs difference between the compact model and the masked one
PROBE_ROWS = 8  # samples in the probe batch (seeded normal noise of the model's input shape)
TIMING_RUNS = 7  # timed forward passes on the probe batch, after one warm-up; the median is reported
_DYNAMIC_BATCH = ("pt2", "onnx")  # formats exported with a dynamic batch dimension
_NEEDS_MODEL = ("pt2", "torchscript", "onnx")  # formats that hold the model's code, not only its weights


def format_for(output: str | os.PathLike, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown --format '{fmt}'; choose one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(output).suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(
            f"cannot tell the format from '{Path(output).name}'; give --format ({', '.join(FORMATS)}) "
            f"or an output ending in {', '.join(SUFFIXES)}"
        )
    return SUFFIXES[suffix]


def parse_shape(text: str) -> list[int]:
    """'3,32,32' -> [3, 32, 32]: one sample's shape, channels first, no batch dimension."""
    try:
        shape = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    except ValueError:
        shape = []
    if len(shape) < 2 or min(shape) < 1:
        raise UsageError(f"--input-shape '{text}': expected channels and spatial sizes, e.g. 3,32,32")
    return shape


def require_onnx() -> None:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(
            f"ONNX export needs the optional extra: pip install 'orthocli[onnx]' ({' and '.join(missing)} not "
            "installed)"
        )


@dataclass
class ExportSpec:
    """What is exported: the module to run and trace, the tensors to write, the extras."""

    model: Any  # the exported model (compact, masked or plain), None without an architecture
    state_dict: dict
    arch: dict | None
    expected: torch.Tensor | None  # its output on the probe batch


# --- the source --------------------------------------------------------------------------------


def _source_model(ckpt, trust: bool) -> Any:
    ckpt.check_finite()
    model = ckpt.module if isinstance(ckpt.module, torch.jit.ScriptModule) else CheckpointModel(ckpt, trust=trust).model
    return model.eval() if model is not None else None


def _dropped(extras: dict) -> dict[str, torch.Tensor]:
    """Dropped filters per layer, from a drop record or from an exported summary of one."""
    record = extras.get("prune") or extras.get("prune_summary") or {}
    return {
        name: torch.as_tensor(layer["dropped"], dtype=torch.long)
        for name, layer in (record.get("layers") or {}).items()
        if len(layer.get("dropped", [])) > 0
    }


def _input_shape(arch: dict | None, given: list[int] | None) -> list[int] | None:
    if given:
        return list(given)
    from orthocli.models import sample_shape

    return sample_shape(arch)


def probe_batch(shape: list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(PROBE_ROWS, *shape, generator=generator).to(dtype)


def _masked(model, dropped: dict) -> Any:
    """The masked sub-network: the model (or its ModelGraph) with the dropped filters' channels
    multiplied by 0 where they are handed on."""
    from orthocli.banks import banks_from_model, masked_forward
    from orthocli.graph import ModelGraph
    from orthocli.masking import masks_from_record

    graph = model if isinstance(model, ModelGraph) else ModelGraph.trace(model)
    banks = banks_from_model(graph)
    gm, masks = masked_forward(graph, banks)
    unknown = sorted(set(dropped) - set(masks))
    if unknown:
        raise CheckpointError(f"the drop record names layers the model does not have: {', '.join(unknown)}")
    follow = {b.name: b.follow for b in banks}
    masks_from_record({"layers": {n: {"dropped": i, "follow": follow[n]} for n, i in dropped.items()}}, masks)
    return gm.eval()


def _run(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return out.detach().float()


def _diff(a, b) -> float:
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    if a.shape != b.shape:
        return float("inf")
    return float((a - b).abs().max()) if a.numel() else 0.0


# --- metadata ----------------------------------------------------------------------------------


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


# --- writing and reading back ------------------------------------------------------------------


def _plain(state_dict: dict) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in state_dict.items()}


def _serialize(fmt: str, spec: ExportSpec, ckpt, compact_doc: dict | None, probe: torch.Tensor | None, output) -> bytes:
    buf = io.BytesIO()
    if fmt == "safetensors":
        from safetensors.torch import save

        return save(_plain(spec.state_dict), metadata=metadata(ckpt.extras, spec.arch, compact_doc))
    if fmt == "pt":
        torch.save(_plain(spec.state_dict), buf)
    elif fmt == "orthocli":
        ckpt_io.writer(_payload(ckpt, spec, compact_doc, output), output)(buf)  # safetensors or torch zip, by the name
    elif fmt == "pt2":
        torch.export.save(_exported_program(spec.model, probe), buf)
    elif fmt == "torchscript":
        # torch 2.9+ marks TorchScript deprecated (the CLI says so once); it still loads on older runtimes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(_script(spec.model, probe), buf)
    elif fmt == "onnx":
        return _onnx_bytes(spec.model, probe)
    return buf.getvalue()


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


def _load_back(fmt: str, path: Path, trust: bool = False) -> tuple[Any, dict | None, dict]:
    """(runnable module or None, state dict or None, orthocli extras) of a written file, read as
    any checkpoint is (checkpoint.py); ONNX and pt2 programs, which are no checkpoints, through their
    runtimes. `trust`: the file may hold the pickled model (`_payload`), as its source did."""
    if fmt == "onnx":
        return _OnnxRunner(path), None, {}
    if fmt == "pt2":  # from a buffer: torch.export.load goes by the name, and the temporary file's ends in .part
        return torch.export.load(io.BytesIO(path.read_bytes())).module(), None, {}
    ckpt = ckpt_io.load(path, trust=trust)
    if fmt == "torchscript":
        return ckpt.module.eval(), None, {}
    return (ckpt.module.eval() if ckpt.module is not None else None), ckpt.state_dict, ckpt.extras


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


def _verify(fmt: str, path: Path, spec: ExportSpec, probe: torch.Tensor | None, trust: bool) -> tuple[float, str]:
    """Load the written file once: the max abs difference to the source, and what was compared
    ("outputs" on the probe batch, or "tensors" where there is no model to run)."""
    try:
        runnable, state, got_meta = _load_back(fmt, path, trust)
        if fmt == "safetensors" and not got_meta:
            raise CheckpointError(f"verification failed: the written {fmt} file lost its metadata; nothing was written")
        if (
            runnable is None
            and probe is not None
            and spec.model is not None
            and not isinstance(spec.model, torch.jit.ScriptModule)
        ):
            runnable = _rebuild(spec, got_meta.get("arch") if fmt == "orthocli" else spec.arch)
            runnable.load_state_dict(state, strict=True)
        if runnable is not None:
            diff = _diff(_run(runnable, probe), spec.expected)
            if fmt in _DYNAMIC_BATCH:  # one sample too: the batch dimension is not fixed to the probe's
                diff = max(diff, _diff(_run(runnable, probe[:1]), spec.expected[:1]))
            return diff, "outputs"
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"verification failed: the written {fmt} file does not load back ({first_line(e, 200)}); nothing was "
            "written"
        ) from None
    if set(state) != set(spec.state_dict):
        raise CheckpointError(
            "verification failed: the written file's keys differ from the source; nothing was written"
        )
    return max((_diff(state[k], spec.state_dict[k]) for k in state), default=0.0), "tensors"


def _rebuild(spec: ExportSpec, arch: dict | None):
    if arch:
        from orthocli.checkpoint_model import rebuild

        return rebuild(arch).eval()
    return copy.deepcopy(spec.model).eval()


def _checked(fmt: str, spec: ExportSpec, probe, result: dict, trust: bool):
    """The check `atomic_write` runs on the temporary file; fills `result`."""

    def check(path: Path) -> None:
        diff, against = _verify(fmt, path, spec, probe, trust)
        result.update(max_abs_diff=diff, against=against)
        if not diff <= VERIFY_TOL:
            raise CheckpointError(
                f"verification failed: the exported {fmt} file's output differs from the source model by {diff:.3g} "
                f"(tolerance {VERIFY_TOL:g}); nothing was written"
            )

    return check


# --- measuring ---------------------------------------------------------------------------------


def median_ms(models: list, x: torch.Tensor, runs: int = TIMING_RUNS) -> list[float]:
    """Median forward time of each model on `x`, in milliseconds. The models take turns, so a
    busy machine slows them alike."""
    times: list[list[float]] = [[] for _ in models]
    with torch.no_grad():
        for model in models:
            model(x)
        for _ in range(runs):
            for model, spent in zip(models, times):
                start = time.perf_counter()
                model(x)
                spent.append(time.perf_counter() - start)
    return [round(statistics.median(t) * 1000, 4) for t in times]


def _stats(model, state_dict: dict, size: int, ms: float | None) -> dict:
    if model is not None:
        params = sum(p.numel() for p in model.parameters())
    else:
        params = sum(t.numel() for t in state_dict.values() if t.is_floating_point())
    return {"params": int(params), "bytes": int(size), "ms": ms}


# --- the command -------------------------------------------------------------------------------


def export(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    fmt: str | None = None,
    compact: bool = False,
    input_shape: list[int] | None = None,
    key: str | None = None,
    trust: bool = False,
    force: bool = False,
) -> dict:
    """Export `source` to `output`, verify the written file, return the report (the --json doc)."""
    fmt = format_for(output, fmt)
    if fmt == "onnx":
        require_onnx()
    check_output(output, force=force, inputs=[source])
    ckpt = ckpt_io.load(source, key=key, trust=trust)
    model, arch, dropped = _source_model(ckpt, trust), ckpt.extras.get("arch"), _dropped(ckpt.extras)
    _refuse(ckpt, fmt, compact, model, arch, dropped, output)
    shape = _input_shape(arch, input_shape)
    if shape is None and (compact or fmt in _NEEDS_MODEL):
        raise UsageError("needs the input shape for the probe batch: give --input-shape, e.g. 3,32,32 (channels first)")
    dtype = next((t.dtype for t in ckpt.state_dict.values() if t.is_floating_point()), torch.float32)
    probe = probe_batch(shape, dtype) if shape is not None and model is not None else None
    graph = _graph_or_none(model, dropped, probe, required=compact or fmt in _NEEDS_MODEL)
    masked = _masked(graph, dropped) if graph is not None else None

    report, leak = None, None
    if compact:
        spec, report = _compact_spec(graph, masked, dropped, arch, probe)
    else:
        exported = masked if (masked is not None and fmt in _NEEDS_MODEL) else model
        spec = ExportSpec(exported, ckpt.state_dict, arch, _run(exported, probe) if probe is not None else None)
        if masked is not None and fmt not in _NEEDS_MODEL:  # the program formats carry the masks: no leak
            leak = _diff(_run(model, probe), _run(masked, probe))
    compact_doc = None if report is None else {**report.to_json(), "source": str(source)}
    data = _serialize(fmt, spec, ckpt, compact_doc, probe, output)
    result: dict = {}
    atomic_write(
        output, lambda f: f.write(data), force=force, inputs=[source], check=_checked(fmt, spec, probe, result, trust)
    )

    timed = [model, spec.model] if compact else [spec.model]
    ms = median_ms(timed, probe) if probe is not None and spec.model is not None else [None] * len(timed)
    before = None
    if compact:  # the same export without --compact, serialized in memory to measure its size
        full = ExportSpec(masked if fmt in _NEEDS_MODEL else model, ckpt.state_dict, arch, None)
        before = _stats(model, ckpt.state_dict, len(_serialize(fmt, full, ckpt, None, probe, output)), ms[0])
    return {
        "checkpoint": str(source),
        "format": fmt,
        "output": str(output),
        "compact": compact,
        "verified": {
            "max_abs_diff": result["max_abs_diff"],
            "tolerance": VERIFY_TOL,
            "against": result["against"],
            "probe_shape": [PROBE_ROWS, *shape] if probe is not None else None,
        },
        "dropped_filters": sum(len(i) for i in dropped.values()),
        "masked_max_abs_diff": leak,
        "before": before,
        "after": _stats(spec.model, spec.state_dict, Path(output).stat().st_size, ms[-1]),
        "compaction": None
        if report is None
        else {**report.to_json(), "patterns": pattern_savings(graph, dropped, report, probe)},
    }


def pattern_savings(graph, dropped: dict, report, probe: torch.Tensor) -> list[dict]:
    """What each compaction pattern (concatenation, spatial reduction, depthwise) gave on this
    model (`graph`: its ModelGraph): the layers whose channels went through it, compacted alone,
    against the full model: parameters removed and median forward time saved (`median_ms`, on the
    probe batch)."""
    from orthocli.compact import PATTERNS, compacted, param_count

    model = graph.model
    savings = []
    for pattern in PATTERNS:
        layers = [name for name, info in report.layers.items() if pattern in info["patterns"]]
        if not layers:
            continue
        small, _ = compacted(graph, {name: dropped[name] for name in layers}, probe)
        full_ms, small_ms = median_ms([model, small.eval()], probe)
        savings.append(
            {
                "pattern": pattern,
                "layers": layers,
                "params_saved": param_count(model) - param_count(small),
                "ms_saved": round(full_ms - small_ms, 4),
            }
        )
    return savings


def _graph_or_none(model, dropped: dict, probe, *, required: bool):
    """The model's graph (traced once: masks, compaction), where there are drops and a Python
    model to run."""
    from orthocli.graph import ModelGraph, TraceError

    if not dropped or probe is None or isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        return ModelGraph.trace(model)
    except TraceError as e:  # fx cannot trace every model
        if required:
            raise CheckpointError(f"cannot trace the model with torch.fx to apply its drop masks ({e})") from None
        return None


def _compact_spec(graph, masked, dropped: dict, arch: dict | None, probe: torch.Tensor):
    from orthocli.compact import compacted

    small, report = compacted(graph, dropped, probe)
    expected = _run(small.eval(), probe)
    gap = _diff(expected, _run(masked, probe))
    if not gap <= COMPACT_TOL:
        kept = "; ".join(f"{n}: {why}" for n, why in report.kept_width.items())
        raise CheckpointError(
            f"--compact: the compact model differs from the masked sub-network by {gap:.3g} (tolerance {COMPACT_TOL:g})"
            + (f"; layers kept at full width leak through their dropped filters ({kept})" if kept else "")
        )
    out_arch = dict(arch, widths={**arch.get("widths", {}), **report.widths}) if arch else None
    return ExportSpec(small, small.state_dict(), out_arch, expected), report


def _refuse(ckpt, fmt: str, compact: bool, model, arch, dropped: dict, output) -> None:
    """One clear message for what cannot be exported, before any work."""
    what = f"{ckpt.path} is a bare state dict ({ckpt.format})"
    fix = "give an orthocli checkpoint (it records the architecture) or a whole pickled model with --trust"
    if ckpt.extras.get("prune") or ckpt.extras.get("reinit"):  # made by orthocli from a bare state dict
        what = f"{ckpt.path} records no architecture and holds no model"
        fix = (
            "prune the model's orthocli checkpoint, or the whole pickled model (with --trust; a .pt output keeps"
            " it, a .safetensors one cannot)"
        )
    if model is None and fmt in _NEEDS_MODEL:
        raise CheckpointError(
            f"{fmt} export needs the model architecture: {what}; export to safetensors or pt, or {fix}"
        )
    if fmt == "pt2" and isinstance(model, torch.jit.ScriptModule):
        raise CheckpointError(
            f"pt2 export needs a Python model: {ckpt.path} is a TorchScript archive, which torch.export cannot "
            "export; export the checkpoint it was made from, or keep the TorchScript file"
        )
    if not compact:
        return
    if model is None:
        raise CheckpointError(f"--compact needs the model architecture: {what}; {fix}")
    if isinstance(model, torch.jit.ScriptModule):
        raise CheckpointError(
            f"--compact needs a Python model: {ckpt.path} is a TorchScript archive, which torch.fx cannot trace"
        )
    if not dropped:
        raise CheckpointError(
            f"--compact: {ckpt.path} drops no filters (no drop record); prune it first with 'orthocli prune'"
        )
    if fmt == "orthocli" and not arch and _module_of(model, output) is None:
        raise CheckpointError(
            f"--format orthocli --compact needs the model architecture to rebuild the compact model: {ckpt.path} "
            "records none; "
            "export the compact model to safetensors, pt, torchscript or onnx instead"
        )


def _module_of(model, output) -> Any:
    """The Python model an orthocli export keeps (pickled, read back with --trust) where no
    architecture rebuilds it: a trusted pickled source's, to a torch file (safetensors holds no code)."""
    if isinstance(model, torch.nn.Module) and not isinstance(model, torch.jit.ScriptModule):
        return None if ckpt_io.writes_safetensors(output) else model
    return None


def _payload(ckpt, spec: ExportSpec, compact_doc: dict | None, output) -> dict:
    """An orthocli checkpoint of the exported weights: the source's extras, the new architecture;
    a compact one drops the drop record (its filter indices no longer exist) and records how it
    was made under "compact". A model no architecture describes travels whole (`_module_of`)."""
    extras = {k: v for k, v in ckpt.extras.items() if k not in ("format", "format_version")}
    if compact_doc is not None:
        extras.pop("prune", None)
        extras["compact"] = compact_doc
    if spec.arch is not None:
        extras["arch"] = spec.arch
    elif ckpt.module is not None:
        extras["module"] = _module_of(spec.model, output)
    if ckpt.extras.get("format") != ckpt_io.FORMAT_NAME:  # as `orthocli prune` records a foreign input
        extras.setdefault("source", {"path": str(ckpt.path), "format": ckpt.format, "key": ckpt.key})
    return ckpt_io.make_payload(_plain(spec.state_dict), **extras)
