"""What `orthocli train` shows: the progress (`Progress`, the CLI's `Reporter`: a Rich bar on a
terminal, else a line per cycle and run), the summary of one run's arms (`render`) and of
`--seeds N` (`render_seeds`). Rich is imported where a table or the bar is drawn."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from orthocli.cli.common import log, stderr, stdout
from orthocli.cli.run_lines import control_line, pct, print_outputs, single_seed_note
from orthocli.training.arms import CONTROLS, comparisons

if TYPE_CHECKING:
    from orthocli.config import TrainConfig
    from orthocli.training.experiment import RedundancyNote


class _Columns(dict):
    def __missing__(self, role: str) -> str:
        return role  # a matched arm: its criterion's name


COLUMN = _Columns({"repr": "RePr", "baseline": "control"})  # the arms' columns in tables


def render_seeds(doc: dict) -> None:
    from rich.table import Table

    out = stdout()
    roles = ["repr", "baseline"] + [k for k in (doc["seeds"][0] if doc["seeds"] else {}) if k in CONTROLS]
    table = Table(title="Per seed: test accuracy (val accuracy)")
    for col in ("seed", *(COLUMN[r] for r in roles)):
        table.add_column(col, justify="right")
    pairs = [(a, b) for _, a, b in _comparisons(roles)]
    for a, b in pairs:
        table.add_column(f"{COLUMN[a]} - {COLUMN[b]}" if len(pairs) > 1 else "difference", justify="right")

    def cell(r: dict) -> str:
        if "failed" in r:
            return "failed"
        if "diverged" in r:
            return f"diverged in epoch {r['diverged']['epoch']}"
        if "skipped" in r:
            return "not trained"
        return f"{pct(r.get('test_accuracy'))} ({pct(r.get('val_accuracy'))})"

    def diff(m: dict, c: dict) -> str:
        both = "test_accuracy" in m and "test_accuracy" in c
        return f"{100 * (m['test_accuracy'] - c['test_accuracy']):+.1f} pts" if both else "-"

    for row in doc["seeds"]:
        table.add_row(str(row["seed"]), *(cell(row[r]) for r in roles), *(diff(row[a], row[b]) for a, b in pairs))
    out.print(table)
    summary = doc["summary"]
    first = summary.get("repr_vs_control", {})
    table = Table(title=f"Over {summary['pairs']} seeds: mean ± sd (%)")
    for col in ("", "test accuracy", "val accuracy"):
        table.add_column(col, justify="right", no_wrap=True)
    arms = {"repr": ("repr_vs_control", "method"), "baseline": ("repr_vs_control", "control")}
    for role in roles[2:]:
        arms[role] = (f"{role}_vs_control", "method")
    for role, (key, side) in arms.items():
        cells = []
        for metric in ("test_accuracy", "val_accuracy"):
            p = summary.get(key, first).get(metric)
            cells.append("-" if p is None else f"{100 * p[side]['mean']:.2f} ± {100 * p[side]['sd']:.2f}")
        table.add_row(COLUMN[role], *cells)
    out.print(table)
    table = Table(title="Paired by seed: first arm minus second (pts), its 95% CI, and wins")
    for col in ("", "", "difference [95% CI]", "wins"):
        table.add_column(col, justify="right", no_wrap=True)
    for key, a, b in _comparisons(roles):
        for label, metric in (("test", "test_accuracy"), ("val", "val_accuracy")):
            p = summary.get(key, {}).get(metric)
            if p is None:
                continue
            ci = "" if p["ci_low"] is None else f" [{100 * p['ci_low']:+.2f}, {100 * p['ci_high']:+.2f}]"
            table.add_row(
                f"{COLUMN[a]} - {COLUMN[b]}", label, f"{100 * p['mean_difference']:+.2f}{ci}", f"{p['wins']}/{p['n']}"
            )
    out.print(table)
    out.print(summary["verdict"], markup=False)


def _comparisons(roles: list[str]) -> list[tuple[str, str, str]]:
    return [c for c in comparisons([r for r in roles if r in CONTROLS]) if c[1] in roles and c[2] in roles]


def cycle_line(role: str, c: dict, schedule: tuple[int, int] | None = None) -> str:
    if role == "baseline":  # the control drops nothing: no phases of the method in its line
        return control_line(c, schedule)
    label = _LABEL[role]
    dropped = sum(c["dropped"].values())
    text = (
        f"{label} cycle {c['cycle']}: val {pct(c['val_before_drop'])} before drop"
        f" -> {pct(c['val_after_subnet'])} after sub-net -> {pct(c['val_after_reinit'])} after re-init"
    )
    if dropped:
        text += f"; {dropped} filter{'s' if dropped != 1 else ''} dropped and re-introduced" + (
            " (random ones)" if role == "random" else ""
        )
    elif role in CONTROLS:
        text += "; no filter dropped (the RePr run dropped none in this cycle)"
    elif role != "baseline":
        text += "; no filter dropped (the rule chose none: the whole network trained)"
    if c["fallbacks"]:
        text += f" ({sum(v['kept_only'] + v['random'] for v in c['fallbacks'].values())} by fallback)"
    unknown = [n for n, r in (c.get("reintroduced") or {}).items() if r.get("fan_out") == "unknown"]
    if unknown:
        text += f"; the output changed at re-introduction (what reads {', '.join(unknown)} is not known)"
    return text


_LABEL = _Columns({"repr": "RePr", "baseline": "baseline"})  # progress and cycle lines


def redundancy_lines(note: RedundancyNote) -> list[str]:
    """What `train` says of the method's candidate layers against random filters (experiment.RedundancyNote)."""
    report = note.report
    if note.when == "start":
        head = "Redundancy before training (candidate layers: mean filter score against random filters of their shape)"
        if note.new_model and note.first_drop_epoch:
            epochs = f"{note.first_drop_epoch} epoch" + ("s" if note.first_drop_epoch != 1 else "")
            head += f"; a new model starts at random filters, the first drop reads them after {epochs}"
    else:
        head = f"Redundancy at cycle 1's drop (after epoch {note.epoch})"
    lines = [head + ":"]
    for layer in report.layers:
        ratio = "" if layer.ratio is None else f" ({layer.ratio:.2f}x)"
        drops = "" if layer.drops is None else f"; the default rule drops {layer.drops} of {layer.filters}"
        lines.append(f"  {layer.name}: mean {layer.mean:.3f}, random filters {layer.chance:.3f}{ratio}{drops}")
    # a new model's filters start random: only the trained ones say whether there is anything to drop
    if report.nothing_to_drop and not (note.when == "start" and note.new_model and note.first_drop_epoch):
        where = "from these weights" if note.when == "start" else "in cycle 1"
        lines.append(
            f"No candidate layer is redundant enough: the default rule drops nothing {where}, and while that holds"
            " the RePr run trains as the control does. Give --ratio to drop anyway."
        )
    return lines


class Progress:
    """The `experiment.Reporter` of the CLI: a Rich progress bar on stderr when it is a terminal (and NO_COLOR
    unset); otherwise one line per cycle and run."""

    PHASES = {"standard": "standard", "subnet": "sub-net", "final": "final"}

    def __init__(self) -> None:
        self.console = stderr()
        self.quiet = False  # set on ranks other than 0: rank 0 reports
        self.bar = None
        self.tasks: dict[str, Any] = {}
        self.told_start = False  # the layers before training are told once per command (--seeds: once, not N times)
        self.schedule: dict[str, tuple[int, int]] = {}  # role -> (s1, s2): the epochs the cycle lines name

    def log(self, text: str) -> None:
        if not self.quiet:
            log(text)

    def __enter__(self) -> Progress:
        if not self.quiet and self.console.is_terminal and not os.environ.get("NO_COLOR"):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def start(self, role: str, cfg: TrainConfig) -> None:
        self.schedule[role] = (cfg.s1, cfg.s2)
        if self.bar is not None:
            self.tasks[role] = self.bar.add_task(role, total=cfg.total_epochs, stats="")

    def update(self, role: str, event: dict) -> None:
        e = event
        if self.bar is None:
            return
        where = self.PHASES.get(e["phase"], e["phase"]) + (f" {e['cycle']}" if e["cycle"] else "")
        label = _LABEL[role]
        stats = f"loss {e['loss']:.4f}  acc {pct(e['train_acc'])}  val {pct(e['val_acc'])}"
        self.bar.update(
            self.tasks[role], completed=e["epoch"], total=e["total"], description=f"{label:8} {where:11}", stats=stats
        )

    def cycle(self, role: str, entry: dict) -> None:
        if self.quiet:
            return
        (self.bar.console if self.bar is not None else self.console).print(
            cycle_line(role, entry, self.schedule.get(role)), markup=False
        )

    def redundancy(self, note: RedundancyNote) -> None:
        if self.quiet or (note.when == "start" and self.told_start):
            return
        self.told_start = self.told_start or note.when == "start"
        for line in redundancy_lines(note):
            (self.bar.console if self.bar is not None else self.console).print(line, markup=False)


def _short_names(names: list[str]) -> dict[str, str]:
    """Layer names without the dotted prefix they all share ("features.conv2" -> "conv2")."""
    parts = [n.split(".") for n in dict.fromkeys(names)]
    common = 0
    while parts and all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return {".".join(p): ".".join(p[common:]) for p in parts}


def render(doc: dict) -> None:
    from rich.table import Table

    out = stdout()
    if doc.get("cycles"):
        table = Table(title="RePr cycles (validation accuracy)")
        for col in ("cycle", "before drop", "after S2", "after reinit", "re-introduced", "fallbacks"):
            left = col.startswith(("re-", "fall"))
            table.add_column(col, justify="left" if left else "right", overflow="fold", no_wrap=not left)
        short = _short_names([n for c in doc["cycles"] for n in c["dropped"]])
        for c in doc["cycles"]:
            per_layer = " ".join(f"{short[n]}:{k}" for n, k in c["dropped"].items()) or "-"
            fallbacks = (
                ", ".join(
                    f"{short.get(n, n)}: {v['kept_only']} kept-only, {v['random']} random"
                    for n, v in c["fallbacks"].items()
                )
                or "none"
            )
            table.add_row(
                str(c["cycle"]),
                pct(c["val_before_drop"]),
                pct(c["val_after_subnet"]),
                pct(c["val_after_reinit"]),
                per_layer,
                fallbacks,
            )
        out.print(table)
    arms = {"repr": doc, **{r: doc[r] for r in doc if r in ("baseline", *CONTROLS)}}
    runs = [(COLUMN[r], a) for r, a in arms.items()]  # "control", as the seeds' tables and the outputs say
    pairs = [(a, b) for _, a, b in _comparisons(list(arms))]
    table = Table(title="Result" + (" (one seed; same budget and data order)" if len(runs) > 1 else ""))
    table.add_column("")
    for name, _ in runs:
        table.add_column(name, justify="right")
    for a, b in pairs:
        table.add_column(f"{COLUMN[a]} - {COLUMN[b]}" if len(pairs) > 1 else "difference", justify="right")
    rows = [("val accuracy", "val_accuracy"), ("test accuracy", "test_accuracy")]
    for label, k in rows:
        if not any(k in r for _, r in runs):
            continue
        diffs = [
            f"{100 * (arms[a][k] - arms[b][k]):+.1f} pts"
            if arms[a].get(k) is not None and arms[b].get(k) is not None
            else "-"
            for a, b in pairs
        ]
        table.add_row(label, *(pct(r.get(k)) for _, r in runs), *diffs)

    def epochs(r: dict) -> str:
        if "failed" in r:
            return "failed"
        if "diverged" in r:
            return f"diverged in {r['diverged']['epoch']}"
        return "not trained" if "skipped" in r else str(r["epochs"])

    table.add_row("epochs", *(epochs(r) for _, r in runs), *([""] * len(pairs)))
    out.print(table)
    print_outputs(out, doc, arms)  # whole paths, under the table: a column would cut them
    if len(runs) > 1:
        out.print(single_seed_note(doc), markup=False)
