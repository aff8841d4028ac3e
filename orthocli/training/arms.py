"""The arms of `orthocli train --baseline --control A,B,...`: beside the method run ("repr") and the
control ("baseline", which drops nothing), one matched arm per criterion named, each dropping in
every cycle exactly as many filters per layer as the method run dropped in that cycle, chosen by
its own ranking (`method.ranking`: "random", "l1", "taylor", ...), written to OUT.<arm>.pt. Their
names, labels and paired comparisons are here, once. Pure; no torch.
"""

from __future__ import annotations

from orthocli.errors import UsageError

# --control choices: the matched arms' rankings (every built-in one but the method's own)
CONTROLS = ("random", "least", "l1", "bn-scale", "taylor", "activation")

_NAMES = {
    "repr": "RePr",
    "baseline": "Control",
    "random": "Random drops",
    "least": "Least-redundant drops",
    "l1": "L1 drops",
    "bn-scale": "BN-scale drops",
    "taylor": "Taylor drops",
    "activation": "Activation drops",
}


def control_arms(control: str | None) -> tuple[str, ...]:
    """The matched arms a --control value names, in its order ("random,l1" -> ("random", "l1"))."""
    if not control:
        return ()
    return tuple(part.strip() for part in control.split(",") if part.strip())


def check_arms(control: str | None) -> tuple[str, ...]:
    """The arms, each a known criterion, none twice; UsageError otherwise."""
    arms = control_arms(control)
    unknown = [a for a in arms if a not in CONTROLS]
    if unknown or not arms:
        raise UsageError(
            f"--control takes criteria separated by commas, each one of {', '.join(CONTROLS)}; got {control!r}"
        )
    twice = sorted({a for a in arms if arms.count(a) > 1})
    if twice:
        raise UsageError(f"--control names {', '.join(twice)} twice; name each criterion once")
    return arms


def arm_name(role: str) -> str:
    """An arm in messages: "RePr", "Control", "Random drops", "L1 drops", ..."""
    return _NAMES.get(role, f"{role} drops")


def column(role: str) -> str:
    """An arm in tables: "RePr", "control", then the criterion's own name."""
    return {"repr": "RePr", "baseline": "control"}.get(role, role)


def comparisons(arms: tuple[str, ...] | list[str]) -> list[tuple[str, str, str]]:
    """(JSON key, first, second) of a sweep, differences first minus second: RePr against the
    control, then per arm the arm against the control and RePr against the arm
    ("random_vs_control", "repr_vs_random", "l1_vs_control", "repr_vs_l1", ...)."""
    out = [("repr_vs_control", "repr", "baseline")]
    for arm in arms:
        out += [(f"{arm}_vs_control", arm, "baseline"), (f"repr_vs_{arm}", "repr", arm)]
    return out
