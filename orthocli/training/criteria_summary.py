"""Which criterion did best on this data, `orthocli train --baseline --control random,l1,taylor
--seeds N`: the method's own ranking (orthogonality, the "repr" arm) and each matched arm, each
against the control; the one with the highest mean gain, against each of the others paired by
seed; and one sentence: it did best beyond noise (its 95% interval against every other criterion
above 0), or no criterion differs from it beyond noise (naming those within noise). No torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from orthocli.training.stats import Arm, Paired
from orthocli.training.verdicts import points


def _paired(doc: dict | None) -> Paired | None:
    if doc is None:
        return None
    return Paired(**{**doc, "method": Arm(**doc["method"]), "control": Arm(**doc["control"])})


def _criterion(role: str) -> str:
    return "orthogonality" if role == "repr" else role


def best_criterion(
    results: Sequence[Any], arms: Sequence[str], compare: Callable[..., dict], metric: str
) -> dict[str, Any]:
    """`compare(results, first, second)`: the paired documents by metric (`paired_runs.compare`).
    Returns {"best", "beyond_noise", "vs_control": {criterion: doc}, "best_vs": {criterion: doc},
    "verdict"}."""
    roles = ["repr", *arms]
    vs_control = {r: compare(results, r, "baseline").get(metric) for r in roles}
    scored = [r for r in roles if vs_control[r] is not None]
    doc: dict[str, Any] = {"metric": metric, "vs_control": {_criterion(r): vs_control[r] for r in roles}}
    if not scored:
        return {**doc, "best": None, "beyond_noise": False, "best_vs": {}, "verdict": "No criterion finished: no best."}
    best = max(scored, key=lambda r: vs_control[r]["mean_difference"])
    best_vs = {r: compare(results, best, r).get(metric) for r in scored if r != best}
    diffs = {r: _paired(d) for r, d in best_vs.items()}
    beyond = bool(diffs) and all(p is not None and p.ci_low is not None and p.ci_low > 0 for p in diffs.values())
    name, gain = _criterion(best), points(_paired(vs_control[best]), metric.replace("_", " "))
    if beyond:
        verdict = (
            f"Of the criteria, {name} did best on this data ({gain} over the control), above every other beyond noise."
        )
    elif any(p is None or p.ci_low is None for p in diffs.values()):
        verdict = f"Of the criteria, {name} gained most ({gain} over the control); one seed cannot say beyond noise."
    else:
        close = [f"{_criterion(r)} {points(p)}" for r, p in diffs.items() if not p.ci_low > 0]
        verdict = (
            f"Of the criteria, none differs beyond noise from {name}, the highest ({gain} over the control):"
            f" {name} minus {'; minus '.join(close)}."
        )
    return {
        **doc,
        "best": name,
        "beyond_noise": beyond,
        "best_vs": {_criterion(r): d for r, d in best_vs.items()},
        "verdict": verdict,
    }
