"""Wall time of `orthocli train` with its runs side by side (`--jobs`) against one after another (a
benchmark, not a test). Runs, in one invocation on the same machine:

1. the sweep `train --baseline --control random --seeds N` at --jobs 1 and --jobs 2, one thread per
   run, and at --jobs 1 with torch's default threads (what a user got before --jobs); prints the
   ratios (goal: J=2 >= 1.7x faster than J=1 on 2 free cores) and checks that the J=2 sweep gave
   the J=1 sweep's results (one thread each: bit-identical);
2. the main job `train --cycles C --baseline` before (--jobs 1, torch's default threads: one
   process, as before --jobs) and after (the default: the arms side by side).

Each command runs as a user runs it (`python -m orthocli train ...`, start-up included), in a fresh
folder. The configurations alternate over --repeats, and each keeps its best time, so other load
on the machine counts less.

    python benchmarks/bench_parallel.py                                  # --seeds 10, the default schedule
    python benchmarks/bench_parallel.py --seeds 4 --s1 4 --s2 2 --cycles 2 --main-cycles 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orthocli.training.job_slots import default_jobs  # noqa: E402


def timed(args: list[str], jobs: int | None, threads: int | None) -> tuple[float, dict]:
    """One `orthocli train` run in a fresh folder: its wall time and its --json document; `jobs`
    None: no --jobs (the default), `threads` None: no --threads (torch's, or cores/jobs)."""
    with tempfile.TemporaryDirectory() as where:
        cmd = [sys.executable, "-m", "orthocli", "train", *args, "-o", f"{where}/m.pt", "--json"]
        cmd += ["--jobs", str(jobs)] if jobs else []
        cmd += ["--threads", str(threads)] if threads else []
        env = {
            **os.environ,
            "NO_COLOR": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.pop("ORTHOCLI_JOBS", None)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=where)
        seconds = time.perf_counter() - t0
        if done.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        doc = json.loads(done.stdout.replace(where, "OUT"))
        return seconds, doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="mnist1d")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--s1", type=int, default=None, help="the sweep's --s1 (default: train's)")
    parser.add_argument("--s2", type=int, default=None)
    parser.add_argument("--cycles", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--main-cycles", type=int, default=5, help="the main job's --cycles")
    parser.add_argument(
        "--main-args", default="", help="more options for the main job (a smoke test: a short schedule)"
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-main", action="store_true")
    a = parser.parse_args()
    schedule = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(a).items()
        if k in ("s1", "s2", "cycles", "max_epochs") and v is not None
    ]
    sweep = ["--data", a.data, "--baseline", "--control", "random", "--seeds", str(a.seeds), *schedule]
    main_job = ["--data", a.data, "--cycles", str(a.main_cycles), "--baseline", *a.main_args.split()]
    configs = {
        "sweep J=1, 1 thread/run": (sweep, 1, 1),
        "sweep J=2, 1 thread/run": (sweep, 2, 1),
        "sweep J=1, torch's threads": (sweep, 1, None),
    }
    if not a.skip_main:
        configs["main job before (--jobs 1)"] = (main_job, 1, None)
        configs["main job after (default)"] = (main_job, None, None)
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{a.data}, {a.seeds} seeds x 3 runs ({' '.join(schedule) or 'the default schedule'}); main job --cycles"
        f" {a.main_cycles} --baseline; {cores} free cores, torch {torch.__version__} (default threads"
        f" {torch.get_num_threads()}); best of {a.repeats}; load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    best: dict[str, float] = {}
    docs: dict[str, dict] = {}
    for _ in range(a.repeats):
        for name, (args, jobs, threads) in configs.items():
            seconds, doc = timed(args, jobs, threads)
            best[name] = min(best.get(name, seconds), seconds)
            docs[name] = doc
            print(f"  {name:30} {seconds:8.1f} s", flush=True)
    one, two, torch_threads = (best[k] for k in list(configs)[:3])
    same = docs["sweep J=2, 1 thread/run"]["seeds"] == docs["sweep J=1, 1 thread/run"]["seeds"]
    print(f"sweep J=1, 1 thread/run        {one:8.1f} s")
    print(f"sweep J=2, 1 thread/run        {two:8.1f} s  {one / two:.2f}x faster than J=1 (goal >= 1.7)")
    print(f"sweep J=1, torch's threads     {torch_threads:8.1f} s  J=2 is {torch_threads / two:.2f}x faster than this")
    print(f"J=2 results identical to J=1 (1 thread each): {same}")
    if not a.skip_main:
        before, after = best["main job before (--jobs 1)"], best["main job after (default)"]
        print(f"main job before (--jobs 1)     {before:8.1f} s")
        print(
            f"main job after (default)       {after:8.1f} s  {before / after:.2f}x faster (default --jobs here: {default_jobs(2, cores)})"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if not same:
        sys.exit("the J=2 sweep's results differ from J=1's")


if __name__ == "__main__":
    main()
