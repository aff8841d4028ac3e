"""How many runs go side by side, and where (`train --jobs`, `--devices`): worker processes,
torch threads per run, the devices of the workers. Pure functions (but `free_cores`, which asks the
operating system); parallel_runs.py uses them."""

from __future__ import annotations

import os

from orthocli.errors import UsageError

# Each worker process is one of these in-process runs at a time; a GPU takes a few (`default_jobs`).
RUNS_PER_GPU = 2


def free_cores() -> int:
    """The CPU cores this process may run on (its affinity: a scheduler's allocation, taskset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_jobs(runs: int, cores: int, gpus: int = 0) -> int:
    """Worker processes when --jobs is not given: one per free core (a GPU: `RUNS_PER_GPU` runs
    each, at most one per core), never more than the runs that can go at once."""
    slots = min(cores, RUNS_PER_GPU * gpus) if gpus else cores
    return max(1, min(slots, runs))


def threads_per_run(jobs: int, cores: int, threads: int | None) -> int:
    """torch's CPU threads in each worker: --threads when given, else the cores shared out, so that
    jobs x threads <= cores."""
    return threads if threads else max(1, cores // jobs)


def parse_devices(spec: str, *, cuda_count: int) -> list[str]:
    """--devices: "all" (every visible GPU) or a comma list of cuda:N / cpu; a CUDA device on a
    machine with `cuda_count` GPUs (0: none, or a CPU build of torch) that lacks it is a usage error."""
    spec = spec.strip().lower()
    if spec == "all":
        if not cuda_count:
            raise UsageError(
                "--devices all: CUDA is not available here (no GPU, or a CPU build of torch); leave it out"
            )
        return [f"cuda:{i}" for i in range(cuda_count)]
    devices = []
    for item in (s.strip() for s in spec.split(",")):
        if item == "cpu":
            devices.append("cpu")
            continue
        index = item.partition(":")[2] if item.startswith("cuda:") else None
        if index is None or not index.isdigit():
            raise UsageError(f"--devices {spec}: expected 'all' or a comma list of cuda:N or cpu, got {item!r}")
        if not cuda_count:
            raise UsageError(
                f"--devices {spec}: CUDA is not available here (no GPU, or a CPU build of torch); leave it out"
            )
        if int(index) >= cuda_count:
            raise UsageError(f"--devices {spec}: there are {cuda_count} CUDA devices (0..{cuda_count - 1})")
        devices.append(f"cuda:{int(index)}")
    if len(set(devices)) < len(devices):
        raise UsageError(f"--devices {spec}: a device is named twice")
    return devices


def assign_devices(jobs: int, devices: list[str] | None) -> list[str | None]:
    """The device of each worker: round robin over `devices` (worker i on devices[i % len]), so J
    workers over D GPUs put ceil(J/D) runs on a GPU at once; None: the runs' own --device."""
    return [devices[i % len(devices)] if devices else None for i in range(jobs)]
