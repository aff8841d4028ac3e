"""Lines `orthocli train` prints beside its tables, worded for someone reading them the first time:
the control's progress at the points where the method drops and re-introduces, the output files
one per line (a table column would cut a long path at 80 columns), and what a single seed's
difference is. No Typer, no torch: the caller passes the console and the summary document."""

from __future__ import annotations

from typing import Any

ARM_LABEL = {"repr": "RePr", "baseline": "control", "random": "random"}  # as the progress lines name the arms


def cycle_epochs(cycle: int, s1: int, s2: int) -> tuple[int, int]:
    """The 1-based epochs at whose ends cycle `cycle` drops (after its S1 epochs) and re-introduces
    (after its S2 epochs): `config.ReprConfig.phase_at`'s schedule."""
    start = (cycle - 1) * (s1 + s2)
    return start + s1, start + s1 + s2


def control_line(entry: dict, schedule: tuple[int, int] | None) -> str:
    """The control's progress line where the method ends cycle `entry["cycle"]`. The control drops
    nothing, has no sub-network and re-introduces nothing: it says its validation accuracy at the
    epochs where the method drops and re-introduces (`schedule`: (s1, s2); None when not known)."""
    before, after = pct(entry.get("val_before_drop")), pct(entry.get("val_after_subnet"))
    if schedule is None:
        return f"control at RePr's cycle {entry['cycle']}: val {before} at its drop -> {after} at its re-init"
    drop, reinit = cycle_epochs(int(entry["cycle"]), *schedule)
    return f"control at epoch {drop}: val {before} -> at epoch {reinit}: val {after} (RePr's cycle {entry['cycle']})"


def print_outputs(out: Any, doc: dict, arms: dict[str, dict]) -> None:
    """The files the run wrote, one per line under the result table, never cut or wrapped (a
    terminal folds a long line; a pipe gets it whole): `arms` role -> that arm's summary."""
    rows = [(ARM_LABEL.get(role, role), arm.get("output")) for role, arm in arms.items()]
    rows += [(what, doc[what]) for what in ("metrics", "plot") if doc.get(what)]
    width = max(len(label) for label, _ in rows)
    out.print("Outputs:", markup=False)
    for label, path in rows:
        out.print(f"  {label:<{width}}  {path or '- (not written)'}", markup=False, soft_wrap=True)


def single_seed_note(doc: dict) -> str:
    """What a --baseline result of one seed is, and where the interval is."""
    seed = (doc.get("config") or {}).get("seed")
    which = "" if seed is None else f" (--seed {seed})"
    return (
        f"One seed{which}: the difference between the two runs changes from seed to seed. For the mean"
        " difference over seeds with its 95% interval, run with --seeds N (e.g. --seeds 10)."
    )


def pct(v: float | None) -> str:
    """An accuracy as a percentage with one decimal; "-" where there is none."""
    return "-" if v is None else f"{100 * v:.1f}%"
