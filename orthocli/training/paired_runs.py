"""Paired runs, `orthocli train --baseline --seeds N`: N (method, control) pairs with seeds S..S+N-1 (S = --seed,
0 by default), and the paired statistics over them (`stats.paired`); with --control random N
triples, and three paired comparisons (RePr against the control, random drops against the control,
RePr against random drops), and one plain verdict line (`verdicts.verdict`).

Each seed is one experiment (`experiment.Experiment`) writing next to -o OUT.pt:
OUT.seed<k>.pt (the method run), OUT.seed<k>.baseline.pt (the control) and OUT.seed<k>.random.pt
(--control random), with their state files while they run. With --resume each seed continues where
it stopped: a seed whose files are all written and have no state file is read back, one with a state
file resumes from it (its saved options), the others start with the options given now (give the
same ones again).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orthocli.errors import UsageError
from orthocli.training.arms import comparisons, control_arms
from orthocli.training.experiment import Experiment, Reporter, check_control, role_output, sibling, state_path
from orthocli.training.options import DataOptions, HardwareOptions, ModelOptions, OutputOptions

if TYPE_CHECKING:
    from orthocli.config import TrainConfig


# The comparisons of a sweep with --control random: (JSON key, first arm, second arm); differences
# are first minus second. Other arms: `arms.comparisons`.
COMPARISONS = tuple(comparisons(("random",)))


def seed_output(output: Path, seed: int) -> Path:
    """Where seed `seed`'s method run is written (its other arms: `experiment.role_output(that, role)`)."""
    return sibling(output, f"seed{seed}")


@dataclass
class SeedResult:
    seed: int
    repr: dict  # the experiment's summary of the method run (or {"diverged": ..., "output": None})
    baseline: dict  # the same for the control
    # the same per matched arm (--control random,l1,...), by its criterion; {"skipped": ...} untrained
    arms: dict[str, dict] = dataclasses.field(default_factory=dict)

    @property
    def random(self) -> dict | None:
        return self.arms.get("random")

    def arm(self, role: str) -> dict | None:
        return {"repr": self.repr, "baseline": self.baseline}.get(role, self.arms.get(role))

    def to_dict(self) -> dict:
        return {"seed": self.seed, "repr": self.repr, "baseline": self.baseline, **self.arms}


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
    import orthocli.checkpoints.checkpoint as ckpt_io

    output = check_sweep(cfg, n, model=model, outputs=outputs, resume=resume)
    matched = control_arms(outputs.control)
    roles = ("repr", "baseline") + matched
    arms = "RePr then control" if not matched else f"RePr, control, then {', '.join(matched)} drops"
    results, diverged, last, read = [], [], {}, {}
    for i, seed in enumerate(range(cfg.seed, cfg.seed + n)):
        out = seed_output(output, seed)
        reporter.log(f"Seed {seed} ({i + 1} of {n}): {arms}, writing {out}")
        files = [role_output(out, role) for role in roles]
        finished = all(p.exists() for p in files) and not state_path(out).exists()
        if resume and finished:  # done before the interruption: read its summaries back
            extras = [ckpt_io.load(p).extras for p in files]
            done = [{**e["summary"], "output": str(p)} for e, p in zip(extras, files)]
            results.append(SeedResult(seed, done[0], done[1], dict(zip(matched, done[2:]))))
            read = extras[0]  # a gather that trains nothing: its config and data from the method run's file
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
        baseline, others = doc.pop("baseline"), {arm: doc.pop(arm) for arm in matched if arm in doc}
        method = {k: doc[k] for k in doc if k not in ("runtime", "config", "data")}
        results.append(SeedResult(seed, method, baseline, others))
        diverged += [(seed, role) for role in run.diverged]
        last = doc
    return summarise(results, diverged, last or {"config": read.get("config"), "data": read.get("data")})


def check_sweep(cfg: TrainConfig, n: int, *, model: ModelOptions, outputs: OutputOptions, resume: bool) -> Path:
    """The options of --seeds N checked; the output path its seeds' files are named after."""
    from orthocli.training.experiment import default_output

    if n < 1:
        raise UsageError(f"--seeds must be at least 1, got {n}")
    if not outputs.baseline:
        raise UsageError("--seeds compares the method with its control seed by seed: add --baseline")
    check_control(cfg, outputs)
    if outputs.save_cycles or outputs.metrics or outputs.plot:
        raise UsageError("--seeds writes one model pair per seed; --save-cycles, --metrics and --plot need one run")
    if resume and outputs.output is None:
        raise UsageError("--resume needs -o/--output: the output path of the interrupted run")
    return outputs.output or default_output(model.arch or "convnet")


def _finished(run: dict | None) -> bool:
    # a run that diverged, was not trained, or failed (--jobs: an error in its worker) has no result
    return run is not None and not {"diverged", "skipped", "failed"} & set(run)


def compare(results: list[SeedResult], first: str, second: str) -> dict[str, Any]:
    """`first` against `second` over the seeds where both finished: for test and validation
    accuracy (where every such seed has it) the `stats.paired` document."""
    from orthocli.training.stats import paired

    both = [r for r in results if _finished(r.arm(first)) and _finished(r.arm(second))]
    out: dict[str, Any] = {}
    for key in ("test_accuracy", "val_accuracy"):
        pairs = [(r.arm(first).get(key), r.arm(second).get(key)) for r in both]
        if pairs and all(a is not None and b is not None for a, b in pairs):
            out[key] = paired([a for a, _ in pairs], [b for _, b in pairs]).to_dict()
    return out


def summarise(
    results: list[SeedResult], diverged: list[tuple[int, str]], last: dict, failed: list[dict] | None = None
) -> dict[str, Any]:
    """Per seed results, the paired statistics over the seeds where both runs of a comparison
    finished, and the verdict; `failed`: the runs whose worker raised (--jobs), {seed, run, error}."""
    both = [r for r in results if _finished(r.repr) and _finished(r.baseline)]
    summary: dict[str, Any] = {"pairs": len(both)}
    summary.update(compare(results, "repr", "baseline"))  # test_accuracy, val_accuracy: RePr against the control
    matched = [a for a in (results[0].arms if results else {})]
    with_random = "random" in matched
    for key, first, second in comparisons(matched):
        summary[key] = compare(results, first, second)
    summary["verdict"] = _verdict(results, summary, with_random)
    if matched != ["random"] and matched:  # several criteria: which did best on this data?
        from orthocli.training.criteria_summary import best_criterion

        summary["criteria"] = best_criterion(results, matched, compare, _metric(summary))
        summary["verdict"] += " " + summary["criteria"]["verdict"]
    return {
        "seeds": [r.to_dict() for r in results],
        "summary": summary,
        "diverged": [{"seed": s, "run": role} for s, role in diverged],
        "failed": failed or [],
        "runtime": last.get("runtime"),
        "config": {k: v for k, v in (last.get("config") or {}).items() if k != "seed"},
        "data": last.get("data"),
    }


def _metric(summary: dict[str, Any]) -> str:
    """Test accuracy where the method's comparison has it, else validation accuracy."""
    return "test_accuracy" if "test_accuracy" in summary["repr_vs_control"] else "val_accuracy"


def _verdict(results: list[SeedResult], summary: dict[str, Any], with_random: bool) -> str:
    from orthocli.training.stats import Arm, Paired
    from orthocli.training.verdicts import verdict

    key = _metric(summary)

    def read(name: str) -> Paired | None:
        doc = summary.get(name, {}).get(key)
        if doc is None:
            return None
        return Paired(**{**doc, "method": Arm(**doc["method"]), "control": Arm(**doc["control"])})

    methods = [r.repr for r in results if _finished(r.repr)]
    # every method run had cycles and none dropped a filter: the rule found nothing to remove
    nothing = bool(methods) and all(m["cycles"] and not any(c["dropped"] for c in m["cycles"]) for m in methods)
    return verdict(
        read("repr_vs_control"),
        random=read("random_vs_control") if with_random else None,
        ranking=read("repr_vs_random") if with_random else None,
        metric=key.replace("_", " "),
        dropped_nothing=nothing,
    )
