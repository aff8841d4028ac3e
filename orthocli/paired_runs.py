"""Paired runs, `orthocli train --baseline --seeds N`: N (method, control) pairs with seeds S..S+N-1 (S = --seed,
0 by default), and the paired statistics over them (`stats.paired`).

Each seed is one experiment (`experiment.Experiment`) writing next to -o OUT.pt:
OUT.seed<k>.pt (the method run) and OUT.seed<k>.baseline.pt (the control), with their state files
while they run. With --resume each seed continues where it stopped: a seed whose two files are
written and have no state file is read back, one with a state file resumes from it (its saved
options), the others start with the options given now (give the same ones again).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orthocli.errors import UsageError
from orthocli.experiment import (
    DataOptions,
    Experiment,
    HardwareOptions,
    ModelOptions,
    OutputOptions,
    Reporter,
    sibling,
    state_path,
)

if TYPE_CHECKING:
    from orthocli.config import TrainConfig


def seed_output(output: Path, seed: int) -> Path:
    """Where seed `seed`'s method run is written (its control: `sibling(that, "baseline")`)."""
    return sibling(output, f"seed{seed}")


@dataclass
class SeedResult:
    seed: int
    repr: dict  # the experiment's summary of the method run (or {"diverged": ..., "output": None})
    baseline: dict  # the same for the control

    def to_dict(self) -> dict:
        return {"seed": self.seed, "repr": self.repr, "baseline": self.baseline}


def run_seeds(
    cfg: TrainConfig,
    n: int,
    *,
    model: ModelOptions,
    data: DataOptions,
    outputs: OutputOptions,
    hardware: HardwareOptions,
    force: bool,
    resume: bool,
    state_every: float,
    reporter: Reporter,
) -> dict[str, Any]:
    """Train the N pairs in seed order; the document `train --json` prints."""
    from orthocli import checkpoint as ckpt_io
    from orthocli.experiment import default_output

    if n < 1:
        raise UsageError(f"--seeds must be at least 1, got {n}")
    if not outputs.baseline:
        raise UsageError("--seeds compares the method with its control seed by seed: add --baseline")
    if outputs.save_cycles or outputs.metrics or outputs.plot:
        raise UsageError("--seeds writes one model pair per seed; --save-cycles, --metrics and --plot need one run")
    if resume and outputs.output is None:
        raise UsageError("--resume needs -o/--output: the output path of the interrupted run")
    output = outputs.output or default_output(model.arch or "convnet")
    results, diverged, last = [], [], {}
    for i, seed in enumerate(range(cfg.seed, cfg.seed + n)):
        out = seed_output(output, seed)
        reporter.log(f"Seed {seed} ({i + 1} of {n}): RePr then control, writing {out}")
        finished = out.exists() and sibling(out, "baseline").exists() and not state_path(out).exists()
        if resume and finished:  # done before the interruption: read its summaries back
            done = [{**ckpt_io.load(p).extras["summary"], "output": str(p)} for p in (out, sibling(out, "baseline"))]
            results.append(SeedResult(seed, *done))
            continue
        if resume and state_path(out).exists():
            run = Experiment.resumed(out, hardware=hardware, state_every=state_every, reporter=reporter)
        else:
            run = Experiment.fresh(
                dataclasses.replace(cfg, seed=seed),
                model=model,
                data=data,
                outputs=dataclasses.replace(outputs, output=out),
                hardware=hardware,
                force=force or resume,
                state_every=state_every,
                reporter=reporter,
            )
        run.train_all()
        doc = run.close()
        if doc is None:  # not rank 0
            continue
        baseline = doc.pop("baseline")
        results.append(SeedResult(seed, {k: doc[k] for k in doc if k not in ("runtime", "config", "data")}, baseline))
        diverged += [(seed, role) for role in run.diverged]
        last = doc
    return summarise(results, diverged, last)


def summarise(results: list[SeedResult], diverged: list[tuple[int, str]], last: dict) -> dict[str, Any]:
    """Per seed results and the paired statistics over the seeds where both runs finished."""
    from orthocli.stats import paired

    both = [r for r in results if "diverged" not in r.repr and "diverged" not in r.baseline]
    summary: dict[str, Any] = {"pairs": len(both)}
    for key in ("test_accuracy", "val_accuracy"):
        pairs = [(r.repr.get(key), r.baseline.get(key)) for r in both]
        if pairs and all(m is not None and c is not None for m, c in pairs):
            summary[key] = paired([m for m, _ in pairs], [c for _, c in pairs]).to_dict()
    return {
        "seeds": [r.to_dict() for r in results],
        "summary": summary,
        "diverged": [{"seed": s, "run": "repr" if role == "repr" else "baseline"} for s, role in diverged],
        "runtime": last.get("runtime"),
        "config": {k: v for k, v in (last.get("config") or {}).items() if k != "seed"},
        "data": last.get("data"),
    }
