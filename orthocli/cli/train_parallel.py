"""`orthocli train --jobs J` (and its default): the runs side by side (`orthocli.training.parallel_runs`),
with one progress display for every worker on stderr: a line per running run and the seeds done
with an estimate of the time left (Rich on a terminal, NO_COLOR unset), else plain lines as runs
start and end."""

from __future__ import annotations

import os
import time
from typing import Any

from orthocli.cli.common import fail, log, stderr
from orthocli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, UsageError


def resolve_jobs(jobs: int | None, *, runs: int, devices: list[str] | None, one_process_only: str | None = None) -> int:
    """--jobs as given (a usage error where only one process can write the outputs), else one
    worker per free core, at most `runs`; 1 under torchrun, whose processes are the parallelism."""
    from orthocli.training.job_slots import default_jobs, free_cores

    if one_process_only is not None:
        if jobs is not None and jobs > 1:
            raise UsageError(
                f"{one_process_only} is written by one process as it trains: give --jobs 1 or leave it out"
            )
        return 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    if jobs is not None:
        return jobs
    gpus = sum(d.startswith("cuda") for d in devices or [])
    return default_jobs(runs, free_cores(), gpus)


def devices_option(spec: str | None) -> list[str] | None:
    """--devices checked against this machine's GPUs (a CUDA device without CUDA is a usage error)."""
    if spec is None:
        return None
    import torch

    from orthocli.training.job_slots import parse_devices

    return parse_devices(spec, cuda_count=torch.cuda.device_count() if torch.cuda.is_available() else 0)


def seeds_document(cfg, n: int, *, resume: bool, jobs: int, devices, **options) -> dict:
    """--seeds N over `jobs` workers: the document the sequential path prints (with "failed")."""
    from orthocli.training.parallel_runs import Interrupted, run_seeds_parallel

    options.pop("reporter", None)
    try:
        return run_seeds_parallel(
            cfg, n, resume=resume, jobs=jobs, devices=devices, display=Display(schedule=(cfg.s1, cfg.s2)), **options
        )
    except Interrupted:
        fail("interrupted; continue with the same command and --resume (finished runs are kept)", EXIT_INTERRUPTED)


def arms_document(cfg, *, jobs: int, devices, **options) -> tuple[dict, list[str], list[dict]]:
    """One experiment with its arms side by side: its document, the arms that diverged, those that failed."""
    from orthocli.training.parallel_runs import Interrupted, run_arms_parallel

    options.pop("reporter", None)
    try:
        return run_arms_parallel(cfg, jobs=jobs, devices=devices, display=Display(schedule=(cfg.s1, cfg.s2)), **options)
    except Interrupted as e:
        from orthocli.training.experiment import state_path

        if state_path(e.output).exists():
            fail(f"interrupted; continue with: orthocli train -o {e.output} --resume", EXIT_INTERRUPTED)
        fail("interrupted before the RePr run saved its first state; nothing to resume", EXIT_INTERRUPTED)


def fail_failed(failed: list[dict]) -> None:
    """Runs whose worker raised: after the results, one line and exit 70 (the others are kept)."""
    if failed:
        lost = "; ".join(f"{_run_name(d)}: {d['error']}" for d in failed)
        fail(
            f"runs failed ({lost}); the other runs are kept; continue with the same command and --resume", EXIT_INTERNAL
        )


def _run_name(d: dict) -> str:
    arm = {"repr": "RePr", "baseline": "control"}.get(d["run"], d["run"])  # a matched arm by its criterion
    return f"seed {d['seed']} {arm}"


class Display:
    """`parallel_runs.Display` for the terminal (stderr)."""

    def __init__(self, schedule: tuple[int, int] | None = None) -> None:
        self.schedule = schedule  # (s1, s2): the epochs the control's cycle lines name
        self.console = stderr()
        self.rich = self.console.is_terminal and not os.environ.get("NO_COLOR")
        self.bar = None
        self.overall = None
        self.tasks: dict[str, Any] = {}  # per running run, its line
        self.left: dict[str, int] = {}  # per run that started, the epochs it has not done yet
        self.done = 0
        self.runs = self.experiments = self.epochs = 0
        self.t0 = time.monotonic()
        self.told_start = False

    def plan(self, runs: int, experiments: int, epochs_per_run: int) -> None:
        self.runs, self.experiments, self.epochs = runs, experiments, epochs_per_run
        self.t0 = time.monotonic()

    def __enter__(self) -> Display:
        if self.rich:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.bar.__enter__()
            self.overall = self.bar.add_task(self._headline(0), total=max(1, self.runs * self.epochs), stats="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
            self.bar = None

    def _headline(self, experiments_done: int) -> str:
        what = "seeds" if self.experiments > 1 else "experiment"
        return f"{what} {experiments_done}/{self.experiments} done, runs {self.done}/{self.runs}"

    def _print(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            log(text)

    def log(self, text: str) -> None:
        self._print(text)

    def started(self, label: str, role: str, total: int) -> None:
        self.left[label] = total
        if self.bar is not None:
            self.tasks[label] = self.bar.add_task(f"{label:16}", total=total, stats="")
        else:
            self._print(f"{label}: training ({total} epochs)")

    def epoch(self, label: str, role: str, e: dict) -> None:
        left = e["total"] - e["epoch"]
        done, self.left[label] = self.left.get(label, left) - left, left
        if self.bar is None or label not in self.tasks:
            return
        from orthocli.cli.run_lines import pct

        where = {"subnet": "sub-net"}.get(e["phase"], e["phase"]) + (f" {e['cycle']}" if e["cycle"] else "")
        stats = f"loss {e['loss']:.4f}  val {pct(e['val_acc'])}"
        self.bar.update(
            self.tasks[label], completed=e["epoch"], total=e["total"], description=f"{label:16} {where:10}", stats=stats
        )
        self.bar.update(self.overall, advance=max(0, done))

    def cycle(self, label: str, role: str, entry: dict) -> None:
        from orthocli.cli.train_render import cycle_line

        self._print(f"[{label}] {cycle_line(role, entry, self.schedule)}")

    def redundancy(self, note) -> None:
        from orthocli.cli.train_render import redundancy_lines

        if note.when == "start" and self.told_start:  # once per command, as the sequential path tells it
            return
        self.told_start = self.told_start or note.when == "start"
        for line in redundancy_lines(note):
            self._print(line)

    def finished(self, label: str, result, experiments_done: int) -> None:
        self.done += 1
        if self.bar is not None:
            task = self.tasks.pop(label, None)
            if task is not None:
                self.bar.remove_task(task)
            # the epochs a run did not take (early stopping, a failure) count as done for the estimate
            self.bar.update(self.overall, advance=self.left.pop(label, self.epochs))
            self.bar.update(self.overall, description=self._headline(experiments_done))
        s = result.summary
        if "failed" in s:
            outcome = f"failed ({s['failed']})"
        elif "diverged" in s:
            outcome = f"diverged in epoch {s['diverged']['epoch']}"
        elif "skipped" in s:
            outcome = "not trained"
        else:
            from orthocli.cli.run_lines import pct

            key = "test_accuracy" if "test_accuracy" in s else "val_accuracy"
            outcome = f"done, {key.split('_')[0]} {pct(s.get(key))}"
        elapsed = time.monotonic() - self.t0
        eta = ""
        if self.done < self.runs:
            eta = f"; about {_duration(elapsed / self.done * (self.runs - self.done))} left"
        self._print(f"{label}: {outcome} ({self._headline(experiments_done)}{eta})")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
