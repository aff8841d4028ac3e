"""The body of `orthocli score`, without Typer: the Typer command (score.py) and the fast path
(fast_args.py) both parse into ScoreArgs and call `run`, which scores every checkpoint, prints the
tables, the JSON document or the GitHub annotations, the gate's lines and the summary line, and
returns the exit code."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orthocli.cli.output import (
    error,
    exit_code_of,
    log,
    message_of,
    name_column,
    output_folder,
    print_json,
    print_table,
    stdout,
)
from orthocli.errors import EXIT_GATE_FAILED, OrthoError, UsageError

if TYPE_CHECKING:
    from orthocli.scoring.checkpoint_scores import CheckpointScores, ScoreOptions

SCHEMA_VERSION = 2  # 2: one document for any number of checkpoints, a list under "checkpoints"
SUMMARY_PREFIX = "orthocli-score:"  # the last stderr line: a machine-readable summary (docs/ci.md)
FORMATS = ("table", "json", "github")


@dataclass(frozen=True)
class ScoreArgs:
    """`orthocli score`'s command line, parsed (by Typer or by fast_args.py)."""

    checkpoints: list[Path]
    layers: list[str] | None = None
    exclude: list[str] | None = None
    top: int = 10
    fail_above: float | None = None
    against: Path | None = None
    tolerance: float | None = None
    key: str | None = None
    trust: bool = False
    json_out: bool = False
    output_format: str | None = None  # one of FORMATS
    plot: Path | None = None  # a PNG, or a folder of one PNG per checkpoint (scoring/pictures.py)
    force: bool = False  # overwrite existing pictures


def run_guarded(args: ScoreArgs) -> int:
    """`run`, its failures ended as every command's are (one `Error: ...` line, the exit code)."""
    try:
        return run(args)
    except BaseException as e:
        code = exit_code_of(e, "score")
        if code is None:
            raise
        return code


def run(args: ScoreArgs) -> int:
    """Score every checkpoint the arguments name; print; return the exit code."""
    from orthocli.checkpoints.files import expand
    from orthocli.scoring.checkpoint_scores import (
        DEFAULT_TOLERANCE,
        ScoreOptions,
        combined_exit_code,
        score_checkpoint,
        unreadable_json,
    )

    fmt = _format(args.json_out, args.output_format)
    if args.tolerance is not None and args.against is None:
        raise UsageError("--tolerance says how much a layer may rise over the --against report; give --against too")
    options = ScoreOptions(
        include=args.layers or None,
        exclude=args.exclude or None,
        key=args.key,
        trust=args.trust,
        top=args.top,
        fail_above=args.fail_above,
        against=_stored_report(args.against),
        tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
    )
    targets = expand(args.checkpoints)
    pictures = None
    if args.plot is not None:  # every picture's path checked before anything is scored
        from orthocli.scoring.pictures import draw_picture, plan_pictures
        from orthocli.scoring.plot import need_matplotlib

        need_matplotlib("--plot")  # before a folder is made for the pictures
        several = len(targets) > 1 and args.plot.suffix.lower() != ".png"  # a folder: "x.png" stays refused
        output_folder(args.plot, is_folder=several)  # a missing folder is created, as every command's
        pictures = plan_pictures(args.plot, [t.path for t in targets], force=args.force)
    entries, codes, failed, rose, worst, scored_layers = [], [], [], [], None, 0
    for i, target in enumerate(targets):
        try:
            if target.error is not None:
                raise target.error
            result = score_checkpoint(target.path, options)
        except OrthoError as e:
            text = message_of(e)
            message = text if str(target.path) in text else f"{target.path}: {text}"
            error(message)
            codes.append(e.exit_code)
            entries.append(unreadable_json(target.path, e.exit_code, message))
            if fmt == "github":
                _annotate(target.path, "orthocli could not score this checkpoint", message)
            continue
        codes.append(result.exit_code)
        if pictures is not None:  # a picture that cannot be written stops the command (exit 5), as any output
            log(f"Picture: {draw_picture(pictures[i], result)}")
        for note in result.notes:
            log(f"Note: {note}")
        _report_gates(result, options, fmt)
        if result.failing:
            failed.append(str(result.path))
        if result.rising:
            rose.append(str(result.path))
        scored_layers += len(result.layers)
        for r in result.layers:
            if worst is None or r.mean > worst[2]:
                worst = (result.path, r.layer.name, r.mean)
        if fmt == "json":  # plain values only: the weights of one file are let go before the next loads
            entries.append(result.to_json())
        elif fmt == "table":
            _render(result, several=len(targets) > 1, top=options.top)
        del result
    code = combined_exit_code(codes)
    if fmt == "json":
        print_json(_document(entries, options, failed, rose, code))
    if len(targets) > 1 and code:
        _summary(code, codes, failed, rose)
    log(_machine_summary(len(targets), codes, scored_layers, worst, code))
    return code


def _stored_report(path: Path | None):
    if path is None:
        return None
    from orthocli.scoring.stored_report import StoredReport

    return StoredReport.read(path)


def _format(json_out: bool, output_format: str | None) -> str:
    if json_out and output_format not in (None, "json"):
        raise UsageError(f"--json and --format {output_format} ask for two outputs; give one")
    return "json" if json_out else (output_format or "table")


def _report_gates(result: CheckpointScores, options: ScoreOptions, fmt: str) -> None:
    """The stderr lines (and GitHub annotations) of one scored checkpoint's gates."""
    if result.failing:
        bound, values = _same_precision(options.fail_above, [r.mean for r in result.failing])
        names = ", ".join(f"{r.layer.name} ({v})" for r, v in zip(result.failing, values))
        log(f"Redundancy gate failed: {result.path}: mean score above {bound} in {names}")
        if fmt == "github":
            for r, v in zip(result.failing, values):
                _annotate(result.path, "orthocli redundancy gate", f"{r.layer.name}: mean score {v} is above {bound}")
    comparison = result.comparison
    if comparison is None:
        return
    report = comparison.report
    if not comparison.in_report:
        log(f"Note: {result.path}: not in {report}; not compared with it")
    elif comparison.new_layers:
        log(f"Note: {result.path}: {', '.join(comparison.new_layers)} not in {report}; not compared with it")
    if result.rising:
        tol, rises = _same_precision(comparison.tolerance, [r.rise for r in result.rising])
        parts = [f"{r.layer} ({r.before:.4f} -> {r.after:.4f}, +{d})" for r, d in zip(result.rising, rises)]
        log(
            f"Redundancy gate failed: {result.path}: mean score rose by more than {tol} over {report} in {', '.join(parts)}"
        )
        if fmt == "github":
            for r, d in zip(result.rising, rises):
                _annotate(
                    result.path,
                    "orthocli redundancy rose",
                    f"{r.layer}: mean score {r.before:.4f} -> {r.after:.4f} (+{d}, more than {tol}) over {report}",
                )


def _same_precision(bound: float, values: list[float]) -> tuple[str, list[str]]:
    """The bound and the values with one number of decimals (at least 4, at least the bound's own),
    enough that a value above the bound never prints equal to it."""
    digits = max(4, len(f"{bound:.12f}".rstrip("0").partition(".")[2]))
    while digits < 12 and any(f"{v:.{digits}f}" == f"{bound:.{digits}f}" for v in values if v != bound):
        digits += 1
    return f"{bound:.{digits}f}", [f"{v:.{digits}f}" for v in values]


def _annotate(path: Path, title: str, message: str) -> None:
    """One GitHub Actions workflow command: the pull request shows it on the file."""

    def escape(text: str, prop: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if prop else text

    print(f"::error file={escape(str(path), True)},title={escape(title, True)}::{escape(message)}", flush=True)


def _summary(code: int, codes: list[int], failed: list[str], rose: list[str]) -> None:
    """The last human stderr line of a run over several checkpoints that did not pass."""
    unusable = sum(1 for c in codes if c not in (0, EXIT_GATE_FAILED))
    parts = []
    if failed:
        parts.append(f"{len(failed)} of {len(codes)} checkpoints failed the gate ({', '.join(failed)})")
    if rose:
        parts.append(f"{len(rose)} of {len(codes)} rose over the stored report ({', '.join(rose)})")
    if unusable:
        parts.append(f"{unusable} of {len(codes)} could not be scored")
    log("; ".join(parts) + f"; exit code {code}")


def _machine_summary(files: int, codes: list[int], layers: int, worst: tuple | None, code: int) -> str:
    """`orthocli-score: files=3 scored=2 failed=1 errors=1 layers=12 worst=runs/a.pt:conv2=0.4120 exit=3`:
    space-separated key=value pairs; a value holding a space or a quote is a JSON string."""

    def value(text: str) -> str:
        return json.dumps(text) if any(c in text for c in ' "\\\t') else text

    scored = sum(1 for c in codes if c in (0, EXIT_GATE_FAILED))
    fields = {
        "files": files,
        "scored": scored,
        "failed": codes.count(EXIT_GATE_FAILED),
        "errors": len(codes) - scored,
        "layers": layers,
        "worst": "-" if worst is None else value(f"{worst[0]}:{worst[1]}={worst[2]:.4f}"),
        "exit": code,
    }
    return " ".join([SUMMARY_PREFIX, *(f"{k}={v}" for k, v in fields.items())])


def _document(entries: list[dict], options: ScoreOptions, failed: list[str], rose: list[str], code: int) -> dict:
    from orthocli import __version__

    scored = sum(1 for e in entries if e["error"] is None)
    bound, against = options.fail_above, options.against
    return {
        "orthocli_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "exit_code": code,
        "checkpoints": entries,
        "summary": {"checkpoints": len(entries), "scored": scored, "errors": len(entries) - scored},
        "gate": None if bound is None else {"fail_above": bound, "passed": code == 0, "failing_checkpoints": failed},
        "against": None
        if against is None
        else {
            "report": str(against.path),
            "tolerance": options.tolerance,
            "passed": code == 0,
            "failing_checkpoints": rose,
        },
    }


def _render(result: CheckpointScores, several: bool, top: int) -> None:
    from rich.table import Table
    from rich.text import Text

    out = stdout()
    if several:
        out.print(Text(f"{result.path} ({result.format})", style="bold"), overflow="fold")
    table = Table(title="Filter redundancy per conv layer (0 = orthogonal, higher = redundant)")
    name_column(table, "layer")
    # "random": the mean that random filters of the layer's shape would score, the level to read a trained layer against
    # "× chance": mean / random, the comparison that matters, divided here rather than by eye; dead
    # filters are a note under the table (a column of zeros had no room beside it at 80 columns)
    for col in ("shape", "filters", "mean", "random", "× chance", "max"):
        table.add_column(col, justify="left" if col == "shape" else "right", overflow="fold")
    for r in result.layers:
        shape = "x".join(str(d) for d in r.layer.weight.shape)
        times = "-" if r.times_chance is None else f"{r.times_chance:.2f}"
        means = (f"{r.mean:.4f}", f"{r.chance:.4f}", times, f"{r.max:.4f}")
        table.add_row(r.layer.name, shape, str(r.layer.filters), *means)
    print_table(table)
    for r in result.layers:  # under the table, not in a column: an 80-column table has no room for them
        if note := _notes(r, result.left_out.get(r.layer.name)):
            out.print(Text(f"{r.layer.name}: {note}"), overflow="fold")
    if top == 0 or not any(r.layer.name not in result.left_out for r in result.layers):
        return  # no list asked for, or no layer the rule considers scored: nothing to rank
    worst = result.above_chance
    if worst:
        ranked = Table(title=f"{len(worst)} most redundant filters (vs random)")
        name_column(ranked, "layer")
        for col in ("filter", "score", "× chance"):
            ranked.add_column(col, justify="right", overflow="fold")
        for name, f, s, x in worst:
            ranked.add_row(name, str(f), f"{s:.4f}", f"{x:.2f}")
        print_table(ranked)
    else:
        out.print("No filter of a layer the drop rule considers scores above random filters' level.", markup=False)


def _notes(r, left_out: str | None = None) -> str:
    notes = []
    if r.dead:
        notes.append(f"{len(r.dead)} dead filter{'s' if len(r.dead) > 1 else ''} (all zeros): {_few(r.dead)}")
    if r.layer.groups > 1:
        notes.append(f"groups={r.layer.groups}")
    if r.layer.transposed:
        notes.append("transposed")
    if r.overcomplete:
        notes.append("more filters than dimensions: they cannot all be orthogonal")
    text = ", ".join(notes)
    if left_out:  # why a layer above chance is not in the list of filters
        text += ("; " if text else "") + f"{left_out}: not in the list of filters"
    return text


def _few(indices: list[int], shown: int = 12) -> str:
    return ", ".join(map(str, indices[:shown])) + (" ..." if len(indices) > shown else "")
