"""`orthocli export`: a deployable file, checked by loading it back once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from orthocli.cli.common import (
    CkptArg,
    ForceOpt,
    JsonOpt,
    KeyOpt,
    TrustOpt,
    command,
    log,
    name_column,
    output_folder,
    print_json,
    print_table,
    stdout,
)

EPILOG = (
    "Example: orthocli export pruned.pt -o model.safetensors\n\n"
    "Compact (dropped filters removed), rebuildable by orthocli: orthocli export pruned.pt -o small.pt --compact "
    "--format orthocli"
)
FORMAT_HELP = (
    "safetensors | pt | pt2 | torchscript | onnx | orthocli. Default: from the output's extension "
    "(.safetensors, .pt/.pth/.bin, .pt2, .ts/.jit/.torchscript, .onnx); 'orthocli' writes an orthocli "
    "checkpoint. pt2 (torch.export) is the format for today's PyTorch; torchscript is for older runtimes."
)


@command
def export(
    checkpoint: CkptArg,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the exported model.", show_default=False)
    ],
    fmt: Annotated[Optional[str], typer.Option("--format", "-F", help=FORMAT_HELP, show_default=False)] = None,
    compact: Annotated[
        bool,
        typer.Option(
            "--compact",
            help="Physically remove the dropped filters (and the channels that read them); verified against the masked "
            "model.",
        ),
    ] = False,
    input_shape: Annotated[
        Optional[str],
        typer.Option(
            "--input-shape",
            help="One sample's shape, channels first (e.g. 3,32,32), where the checkpoint does not record it.",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
    key: KeyOpt = None,
    trust: TrustOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Export a checkpoint for deployment (safetensors, pt, pt2, TorchScript, ONNX), verified by loading it back."""
    from orthocli.export.pipeline import export as run_export
    from orthocli.export.pipeline import parse_shape

    shape = parse_shape(input_shape) if input_shape is not None else None
    output_folder(output)  # a missing folder is created, as every command's
    doc = run_export(checkpoint, output, fmt=fmt, compact=compact, input_shape=shape, key=key, trust=trust, force=force)
    if json_out:
        print_json(doc)
    else:
        _render(doc)
    for layer in (doc["compaction"] or {}).get("kept_width", []):
        log(f"Note: {layer['name']} keeps its width: {layer['reason']}")
    if doc["masked_max_abs_diff"]:
        log(
            f"Warning: the exported weights differ from the masked sub-network by {doc['masked_max_abs_diff']:.3g}: "
            "dropped filters leak through an activation with f(0) != 0. Use --compact, or pt2/torchscript/onnx, "
            "which keep the masks."
        )
    if doc["format"] == "torchscript":  # torch's own deprecation warnings are silenced: say it once, with the fix
        log(
            "Note: PyTorch marks TorchScript deprecated; it suits older runtimes and libtorch. "
            "For PyTorch 2.x use --format pt2"
        )
    v = doc["verified"]
    log(
        f"Wrote {output} ({doc['format']}); verified by loading it back: max abs diff {v['max_abs_diff']:.3g} on "
        f"{v['against']}"
    )


def _render(doc: dict) -> None:
    from rich.table import Table

    table = Table(title=f"Export to {doc['format']}" + (" (compact)" if doc["compact"] else ""))
    table.add_column("", justify="left")
    if doc["before"] is not None:
        table.add_column("before", justify="right")
    table.add_column("after" if doc["before"] is not None else "exported", justify="right")
    for row, fmt in (("params", "{:,}"), ("bytes", "{:,}"), ("ms", "{:.3f}")):
        cells = [doc[side][row] for side in ("before", "after") if doc[side] is not None]
        table.add_row(
            f"{row} (median of runs)" if row == "ms" else row, *("-" if c is None else fmt.format(c) for c in cells)
        )
    out = stdout()
    out.print(table)
    if doc["compaction"]:
        layers = Table(title="Compacted layers")
        name_column(layers, "layer")
        for col in ("filters", "kept", "through / why full width"):
            layers.add_column(col, justify="right" if col in ("filters", "kept") else "left", overflow="fold")
        for layer in doc["compaction"]["layers"]:
            layers.add_row(layer["name"], str(layer["filters"]), str(layer["kept"]), ", ".join(layer["patterns"]))
        for layer in doc["compaction"]["kept_width"]:
            layers.add_row(layer["name"], "", "full width", layer["reason"])
        print_table(layers)
    if doc["compaction"] and doc["compaction"]["patterns"]:
        saved = Table(title="Saving by pattern (its layers compacted alone)")
        for col in ("pattern", "layers", "params saved", "ms saved"):
            saved.add_column(col, justify="left" if col in ("pattern", "layers") else "right", overflow="fold")
        for p in doc["compaction"]["patterns"]:
            saved.add_row(p["pattern"], ", ".join(p["layers"]), f"{p['params_saved']:,}", f"{p['ms_saved']:.3f}")
        out.print(saved)
