"""Runs side by side: `orthocli train --baseline [--control random,l1,...] [--seeds N] --jobs J`.

An experiment (`experiment.Experiment`) trains its arms one after another in one process; they are
independent but for one thing: a matched arm (`--control`) drops, cycle by cycle, as many filters
per layer as the method run did. So every arm of every seed is one *run*, and J worker processes
(spawned: no state inherited from this one) take runs as they come free; a seed's matched arms
wait for its method run and receive its counts. Each run builds the same `Experiment` the sequential
path builds (the same options, the same seed, the same files), trains only its own arm (`_OneArm`)
and sends back the arm's summary: the files and results are those of the sequential run with the
same --threads, bit for bit (every arm re-seeds its model, data order and re-initialisation from
its seed, `seeding`).

State files stay until every arm of an experiment is done (as in the sequential run), so --resume
continues any mix: an arm whose output is written and has no state file is read back, one with a
state file resumes from it, the others start. Ctrl-C (in this process) interrupts every worker,
whose last saved states are then on disk. A run that fails with an error that is not the user's
input (a bug, a model's own code raising, memory) is reported as failed; the others go on. An
input error (`errors.OrthoError`) stops every run: the next run would meet it too.

This module knows no terminal: what happens goes to a `Display` (the CLI's draws it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from orthocli.errors import OrthoError
from orthocli.training.arms import control_arms
from orthocli.training.experiment import ARM_NAMES, Experiment, role_output, state_path
from orthocli.training.job_slots import assign_devices, free_cores, threads_per_run
from orthocli.training.options import STATE_EVERY, DataOptions, HardwareOptions, ModelOptions, OutputOptions

if TYPE_CHECKING:
    from orthocli.config import TrainConfig

NO_COUNTS = "the RePr run diverged before its last cycle: no drop counts to match"  # as Experiment says it
FAILED_COUNTS = "the RePr run failed: no drop counts to match"


# ---------------------------------------------------------------------------------------------
# What the pool is given and gives back


@dataclass(frozen=True)
class Plan:
    """One experiment to train side by side: what `Experiment.fresh` takes, with its output."""

    seed: int
    output: Path  # its method run's output (OUT.pt, or OUT.seed<k>.pt for --seeds)
    cfg: TrainConfig
    model: ModelOptions
    data: DataOptions
    outputs: OutputOptions

    @property
    def roles(self) -> tuple[str, ...]:
        o = self.outputs
        return ("repr",) + (("baseline",) if o.baseline else ()) + self.matched

    @property
    def matched(self) -> tuple[str, ...]:
        """The matched arms (--control random,l1,...): each drops the method run's counts."""
        return control_arms(self.outputs.control)


@dataclass(frozen=True)
class Task:
    """One run: an arm of a plan, and how it starts."""

    plan: int  # index into the plans
    role: str
    resume: bool  # the method run's state file is there: the experiment's saved options (Experiment.resumed)
    counts: dict | None = None  # a matched arm (--control): the method run's drops per cycle
    label: str = ""  # "seed 3 control", for the display


@dataclass
class ArmResult:
    """An arm's outcome: its summary (as the experiment's document has it), or why it failed."""

    role: str
    summary: dict  # {"diverged"...}, {"skipped"...} or {"failed": message, "output": None} where it did not finish
    diverged: bool = False
    counts: dict | None = None  # the method run: its drops per cycle (None: not every cycle finished)
    extras: dict = field(default_factory=dict)  # runtime, config, data: the experiment's document's
    read_back: bool = False  # finished before, read from its file


class Display(Protocol):
    """What the pool tells its caller, in the main process."""

    def __enter__(self) -> Display: ...

    def __exit__(self, *exc: object) -> None: ...

    def plan(self, runs: int, experiments: int, epochs_per_run: int) -> None: ...  # the work, once

    def log(self, text: str) -> None: ...

    def started(self, label: str, role: str, total: int) -> None: ...

    def epoch(self, label: str, role: str, event: dict) -> None: ...  # trimmed: no tensors

    def cycle(self, label: str, role: str, entry: dict) -> None: ...

    def redundancy(self, note: Any) -> None: ...  # experiment.RedundancyNote

    def finished(self, label: str, result: ArmResult, experiments_done: int) -> None: ...


# ---------------------------------------------------------------------------------------------
# The worker side


class _OneArm(Experiment):
    """The experiment the sequential path builds, training one of its arms; a matched arm gets
    the method run's counts from the run that trained it."""

    arm: tuple[str, ...] = ("repr",)
    given_counts: dict | None = None

    @property
    def roles(self) -> tuple[str, ...]:
        return self.arm

    def matched_counts(self):
        if "repr" in self.arm:
            return super().matched_counts()
        return self.given_counts


class _QueueReporter:
    """`experiment.Reporter` in a worker: everything goes to the main process, without tensors."""

    def __init__(self, events, label: str) -> None:
        self.events, self.label, self.quiet = events, label, False

    def __enter__(self) -> _QueueReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def log(self, text: str) -> None:
        if not self.quiet:
            self.events.put(("log", f"[{self.label}] {text}"))

    def start(self, role: str, cfg) -> None:
        self.events.put(("started", self.label, role, cfg.total_epochs))

    def update(self, role: str, event: dict) -> None:
        keep = ("epoch", "total", "phase", "cycle", "loss", "train_acc", "val_acc")
        self.events.put(("epoch", self.label, role, {k: event.get(k) for k in keep}))

    def cycle(self, role: str, entry: dict) -> None:
        self.events.put(("cycle", self.label, role, {k: v for k, v in entry.items() if k != "state_dict"}))

    def redundancy(self, note) -> None:
        self.events.put(("redundancy", note))


def run_task(plan: Plan, task: Task, hardware: HardwareOptions, state_every: float, reporter) -> ArmResult:
    """Train one arm of `plan` as the sequential experiment would (in this process)."""
    from orthocli.training.runtime import teardown

    if task.resume:
        run = _OneArm.resumed(plan.output, hardware=hardware, state_every=state_every, reporter=reporter)
    else:
        run = _OneArm.fresh(
            plan.cfg,
            model=plan.model,
            data=plan.data,
            outputs=dataclasses.replace(plan.outputs, output=plan.output),
            hardware=hardware,
            force=True,  # the main process checked the outputs; a state file here is a run that starts over
            state_every=state_every,
            reporter=reporter,
        )
    run.arm, run.given_counts = (task.role,), task.counts
    run.train_all()
    teardown(run.rt)
    extras = {"runtime": run.rt.describe(), "config": run.resolved(), "data": run.data_extras()}
    return ArmResult(
        task.role,
        run._summary(task.role),
        diverged=task.role in run.diverged,
        counts=run.matched_counts() if task.role == "repr" else None,
        extras=extras,
    )


def _worker(index: int, plans, tasks, events, hardware: HardwareOptions, state_every: float, threads: int) -> None:
    """A worker process: runs tasks until it gets None; SIGINT (Ctrl-C) ends it quietly."""
    try:
        import torch

        torch.set_num_threads(threads)  # --threads, when given, is set again by the experiment
        while True:
            task = tasks.get()
            if task is None:
                return
            events.put(("took", index, task))
            try:
                result = run_task(plans[task.plan], task, hardware, state_every, _QueueReporter(events, task.label))
            except OrthoError as e:  # the user's input: every run would meet it
                events.put(("input_error", index, task, e))
                continue
            except Exception as e:  # this run alone: a bug, a model's own code, memory
                message = f"{type(e).__name__}: {e}"
                result = ArmResult(task.role, {"failed": message, "output": None})
            events.put(("done", index, task, result))
    except KeyboardInterrupt:
        events.cancel_join_thread()  # exit now, even with messages the main process will not read
        return


# ---------------------------------------------------------------------------------------------
# The main side


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while runs were going: every worker was stopped; their saved states are on disk.
    `output`: the method run's output of the experiment (run_arms_parallel), None for --seeds."""

    def __init__(self, output: Path | None = None) -> None:
        super().__init__()
        self.output = output


@dataclass
class _PlanState:
    results: dict[str, ArmResult] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    resume: bool = False  # its method run's state file was there: its arms continue the saved experiment


def read_back(output: Path, role: str) -> ArmResult | None:
    """An arm finished before (its file written, no state file beside it): its summary from the file."""
    import orthocli.checkpoints.checkpoint as ckpt_io

    path = role_output(output, role)
    if not path.exists() or state_path(path).exists():
        return None
    extras = ckpt_io.load(path).extras
    summary = {**extras["summary"], "output": str(path)}
    counts = {int(c["cycle"]): dict(c.get("dropped") or {}) for c in summary.get("cycles", [])}
    return ArmResult(
        role,
        summary,
        counts=counts if role == "repr" else None,
        extras={"config": extras.get("config"), "data": extras.get("data")},
        read_back=True,
    )


def run_plans(
    plans: list[Plan],
    *,
    jobs: int,
    hardware: HardwareOptions,
    devices: list[str] | None,
    resume: bool,
    state_every: float = STATE_EVERY,
    display: Display,
    labels: list[str] | None = None,
) -> list[dict[str, ArmResult]]:
    """Train every arm of every plan over `jobs` worker processes; per plan, its arms' results.
    With `resume`, arms finished before are read back and the others resume or start."""
    labels = labels or [f"seed {p.seed}" for p in plans]
    states = [_PlanState() for _ in plans]
    ready: deque[Task] = deque()
    for i, plan in enumerate(plans):
        st = states[i]
        if resume:
            for role in plan.roles:
                done = read_back(plan.output, role)
                if done is not None:
                    st.results[role] = done
        has_state = st.resume = resume and state_path(plan.output).exists()
        for role in plan.roles:
            if role in st.results:
                continue
            if role in plan.matched and "repr" not in st.results:
                st.waiting.add(role)
                continue
            counts = st.results["repr"].counts if role in plan.matched else None
            ready.append(Task(i, role, has_state, counts, f"{labels[i]} {_ARM[role]}".strip()))
    runs = len(ready) + sum(len(st.waiting) for st in states)
    epochs = max(p.cfg.total_epochs for p in plans) if plans else 0
    done_plans = sum(not _open(st, p) for st, p in zip(states, plans))
    display.plan(runs, len(plans), epochs)
    if runs == 0:
        return [st.results for st in states]
    jobs = max(1, min(jobs, runs))
    threads = threads_per_run(jobs, free_cores(), hardware.threads)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # CUDA and torch's threads need a fresh process
    tasks, events = ctx.Queue(), ctx.Queue()
    workers = []
    for index, device in enumerate(assign_devices(jobs, devices)):
        hw = hardware if device is None else dataclasses.replace(hardware, device=device)
        p = ctx.Process(target=_worker, args=(index, plans, tasks, events, hw, state_every, threads))
        p.start()
        workers.append(p)
    holding: dict[int, Task] = {}  # worker -> the task it runs
    in_flight = 0
    try:
        with display:
            while True:
                while ready and in_flight < jobs:
                    tasks.put(ready.popleft())
                    in_flight += 1
                if in_flight == 0 and not ready:
                    break
                try:
                    message = events.get(timeout=1.0)
                except queue.Empty:
                    _check_alive(workers, holding, events)
                    continue
                kind = message[0]
                if kind == "log":
                    display.log(message[1])
                elif kind == "started":
                    display.started(*message[1:])
                elif kind == "epoch":
                    display.epoch(*message[1:])
                elif kind == "cycle":
                    display.cycle(*message[1:])
                elif kind == "redundancy":
                    display.redundancy(message[1])
                elif kind == "took":
                    holding[message[1]] = message[2]
                elif kind == "input_error":
                    raise message[3]
                elif kind == "done":
                    _, index, task, result = message
                    holding.pop(index, None)
                    in_flight -= 1
                    st, plan = states[task.plan], plans[task.plan]
                    st.results[task.role] = result
                    if task.role == "repr":
                        _release_matched(plans, states, task.plan, ready, labels, display)
                    if not _open(st, plan):
                        done_plans += 1
                        _close(plan, st)
                    display.finished(task.label, result, done_plans)
    except KeyboardInterrupt:
        _stop(workers, signal.SIGINT)
        raise Interrupted() from None
    except BaseException:
        _stop(workers, signal.SIGINT)
        raise
    for _ in workers:
        tasks.put(None)
    for p in workers:
        p.join()
    return [st.results for st in states]


class _Labels(dict):
    def __missing__(self, role: str) -> str:
        return role  # a matched arm by its criterion ("random", "l1", ...)


_ARM = _Labels(repr="RePr", baseline="control")


def _open(st: _PlanState, plan: Plan) -> bool:
    return any(role not in st.results for role in plan.roles)


def _release_matched(plans, states, i: int, ready: deque, labels, display) -> None:
    """The method run of plan i is done: its matched arms may go (or are skipped, as Experiment skips them)."""
    st = states[i]
    if "repr" not in st.results:
        return
    method = st.results["repr"]
    waiting = [r for r in plans[i].matched if r in st.waiting]
    for role in reversed(waiting):  # appended to the left: they start in --control's order
        st.waiting.discard(role)
        if method.counts is None:
            why = FAILED_COUNTS if "failed" in method.summary else NO_COUNTS
            display.log(f"[{labels[i]}] {ARM_NAMES[role]}: not trained ({why})")
            st.results[role] = ArmResult(role, {"skipped": why, "output": None})
            continue
        ready.appendleft(Task(i, role, st.resume, method.counts, f"{labels[i]} {_ARM[role]}".strip()))
    if waiting and method.counts is None and not _open(st, plans[i]):
        _close(plans[i], st)


def _close(plan: Plan, st: _PlanState) -> None:
    """Every arm of the plan is done: its state files go, as `Experiment.close` removes them (a
    failed arm keeps its own, so that --resume retries it from there)."""
    for role, result in st.results.items():
        if "failed" not in result.summary:
            state_path(role_output(plan.output, role)).unlink(missing_ok=True)


def _check_alive(workers, holding: dict[int, Task], events) -> None:
    """A worker that died (killed: out of memory) fails its run rather than hanging the pool; with
    none left, the runs still waiting cannot go."""
    for index, p in enumerate(workers):
        if not p.is_alive() and index in holding:
            task = holding.pop(index)
            message = f"its worker process ended (exit code {p.exitcode})"
            events.put(("done", index, task, ArmResult(task.role, {"failed": message, "output": None})))
    if not any(p.is_alive() for p in workers) and events.empty():
        raise RuntimeError("every worker process ended; runs were left: continue with --resume")


def _stop(workers, sig: int) -> None:
    """Interrupt every worker (a terminal's Ctrl-C already reached them; a signal to this process
    alone did not) and wait for them: each stops at once, its last saved state on disk."""
    for p in workers:
        if p.is_alive() and p.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)
    deadline = time.monotonic() + 30
    for p in workers:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join(5)


# ---------------------------------------------------------------------------------------------
# The two callers: --seeds N, and one experiment's arms


def _validated(plan: Plan, hardware: HardwareOptions, force: bool, state_every: float, reporter) -> Experiment:
    """The checks of the sequential path before anything trains (outputs, state files, --control)."""
    return Experiment.fresh(
        plan.cfg,
        model=plan.model,
        data=plan.data,
        outputs=plan.outputs,
        hardware=hardware,
        force=force,
        state_every=state_every,
        reporter=reporter,
    )


def _failed(seed: int, results: dict[str, ArmResult], roles) -> list[dict]:
    return [
        {"seed": seed, "run": r, "error": results[r].summary["failed"]} for r in roles if "failed" in results[r].summary
    ]


def run_seeds_parallel(
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
    jobs: int,
    devices: list[str] | None,
    display: Display,
) -> dict[str, Any]:
    """`paired_runs.run_seeds` over `jobs` workers: the same document (and "failed": runs whose
    worker raised), the same files."""
    from orthocli.training.paired_runs import SeedResult, check_sweep, seed_output, summarise

    output = check_sweep(cfg, n, model=model, outputs=outputs, resume=resume)
    plans = []
    for seed in range(cfg.seed, cfg.seed + n):
        out = seed_output(output, seed)
        plan = Plan(
            seed, out, dataclasses.replace(cfg, seed=seed), model, data, dataclasses.replace(outputs, output=out)
        )
        started = state_path(out).exists() or all(role_output(out, r).exists() for r in plan.roles)
        if not (resume and started):
            _validated(plan, hardware, force or resume, state_every, display)
        plans.append(plan)
    results = run_plans(
        plans, jobs=jobs, hardware=hardware, devices=devices, resume=resume, state_every=state_every, display=display
    )
    seeds, diverged, failed, last, read = [], [], [], {}, {}
    for plan, res in zip(plans, results):
        seeds.append(
            SeedResult(
                plan.seed, res["repr"].summary, res["baseline"].summary, {r: res[r].summary for r in plan.matched}
            )
        )
        diverged += [(plan.seed, r) for r in plan.roles if res[r].diverged]
        failed += _failed(plan.seed, res, plan.roles)
        trained = [res[r].extras for r in plan.roles if not res[r].read_back and res[r].extras]
        last = trained[0] if trained else last
        read = res["repr"].extras if res["repr"].read_back else read
    return summarise(seeds, diverged, last or {"config": read.get("config"), "data": read.get("data")}, failed)


def run_arms_parallel(
    cfg: TrainConfig,
    *,
    model: ModelOptions,
    data: DataOptions,
    outputs: OutputOptions,
    hardware: HardwareOptions,
    force: bool,
    state_every: float,
    jobs: int,
    devices: list[str] | None,
    display: Display,
) -> tuple[dict, list[str], list[dict]]:
    """One experiment (--baseline, --control) with its arms side by side: the document
    `Experiment.close` returns, the arms that diverged, and those that failed."""
    run = _validated(
        Plan(cfg.seed, outputs.output or Path("unused"), cfg, model, data, outputs),
        hardware,
        force,
        state_every,
        display,
    )
    plan = Plan(cfg.seed, run.output, cfg, model, data, run.meta.outputs)
    try:
        res = run_plans(
            [plan],
            jobs=jobs,
            hardware=hardware,
            devices=devices,
            resume=False,
            state_every=state_every,
            display=display,
            labels=[""],
        )[0]
    except Interrupted:
        raise Interrupted(plan.output) from None
    doc = dict(res["repr"].summary)
    for role in plan.roles[1:]:
        doc[role] = res[role].summary
    extras = next((res[r].extras for r in plan.roles if res[r].extras), {})
    doc.update(runtime=extras.get("runtime"), config=extras.get("config"), data=extras.get("data"))
    return doc, [r for r in plan.roles if res[r].diverged], _failed(cfg.seed, res, plan.roles)
