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

import copy
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli.atomic import atomic_write, check_output
from orthocli.checkpoints.model import CheckpointModel
from orthocli.errors import CheckpointError, UsageError, first_line
from orthocli.export.formats import FORMATS, SUFFIXES, TABLE, ExportSpec, module_of
from orthocli.method.masking import masked_model

VERIFY_TOL = 1e-4  # max abs difference between the loaded file's output and the source model's
COMPACT_TOL = 1e-5  # max abs difference between the compact model and the masked one
PROBE_ROWS = 8  # samples in the probe batch (seeded normal noise of the model's input shape)
TIMING_RUNS = 7  # timed forward passes on the probe batch, after one warm-up; the median is reported


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
    from orthocli.network.models import sample_shape

    return sample_shape(arch)


def probe_batch(shape: list[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(PROBE_ROWS, *shape, generator=generator).to(dtype)


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


# --- writing and checking ----------------------------------------------------------------------


def _serialize(fmt: str, spec: ExportSpec, ckpt, compact_doc: dict | None, probe: torch.Tensor | None, output) -> bytes:
    return TABLE[fmt].write(spec, ckpt, compact_doc, probe, output)


def _load_back(fmt: str, path: Path, trust: bool = False) -> tuple[Any, dict | None, dict]:
    """(runnable module or None, state dict or None, orthocli extras) of a written file (formats.py)."""
    return TABLE[fmt].read(path, trust)


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
            if TABLE[fmt].dynamic_batch:  # one sample too: the batch dimension is not fixed to the probe's
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
        from orthocli.checkpoints.model import rebuild

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
    if TABLE[fmt].requires is not None:
        TABLE[fmt].requires()
    check_output(output, force=force, inputs=[source])
    ckpt = ckpt_io.load(source, key=key, trust=trust)
    model, arch, dropped = _source_model(ckpt, trust), ckpt.extras.get("arch"), _dropped(ckpt.extras)
    _refuse(ckpt, fmt, compact, model, arch, dropped, output)
    shape = _input_shape(arch, input_shape)
    if shape is None and (compact or TABLE[fmt].needs_model):
        raise UsageError("needs the input shape for the probe batch: give --input-shape, e.g. 3,32,32 (channels first)")
    dtype = next((t.dtype for t in ckpt.state_dict.values() if t.is_floating_point()), torch.float32)
    probe = probe_batch(shape, dtype) if shape is not None and model is not None else None
    graph = _graph_or_none(model, dropped, probe, required=compact or TABLE[fmt].needs_model)
    masked = masked_model(graph, dropped) if graph is not None else None

    report, leak = None, None
    if compact:
        spec, report = _compact_spec(graph, masked, dropped, arch, probe)
    else:
        exported = masked if (masked is not None and TABLE[fmt].needs_model) else model
        spec = ExportSpec(exported, ckpt.state_dict, arch, _run(exported, probe) if probe is not None else None)
        if masked is not None and not TABLE[fmt].needs_model:  # the program formats carry the masks: no leak
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
        full = ExportSpec(masked if TABLE[fmt].needs_model else model, ckpt.state_dict, arch, None)
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
    from orthocli.network.compact import PATTERNS, compacted, param_count

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
    from orthocli.network.graph import ModelGraph, TraceError

    if not dropped or probe is None or isinstance(model, torch.jit.ScriptModule):
        return None
    try:
        return ModelGraph.trace(model)
    except TraceError as e:  # fx cannot trace every model
        if required:
            raise CheckpointError(f"cannot trace the model with torch.fx to apply its drop masks ({e})") from None
        return None


def _compact_spec(graph, masked, dropped: dict, arch: dict | None, probe: torch.Tensor):
    from orthocli.network.compact import compacted

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
    if model is None and TABLE[fmt].needs_model:
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
    if fmt == "orthocli" and not arch and module_of(model, output) is None:
        raise CheckpointError(
            f"--format orthocli --compact needs the model architecture to rebuild the compact model: {ckpt.path} "
            "records none; "
            "export the compact model to safetensors, pt, torchscript or onnx instead"
        )
