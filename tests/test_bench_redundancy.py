"""benchmarks/bench_redundancy.py: docs/results.md's table of filter scores, RePr against control."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_redundancy.py"


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_table_pairs_each_seed_with_its_control(tmp_path):
    # 4 filters: orthogonal ones score 0; four copies of one filter score 3/4 (|cos| 1 with 3 others)
    orthogonal = {"conv.weight": torch.eye(4).reshape(4, 4, 1)}
    copies = {"conv.weight": torch.ones(4, 4, 1)}
    for seed in (0, 1):
        torch.save(orthogonal, tmp_path / f"run.seed{seed}.pt")
        torch.save(copies, tmp_path / f"run.seed{seed}.baseline.pt")
    torch.save(orthogonal, tmp_path / "run.seed2.pt")  # no control: left out

    done = bench(str(tmp_path / "run.pt"))

    assert done.returncode == 0, done.stderr
    assert "2 seeds" in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("| conv |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "4x4x1"
    assert cells[3:] == ["0.750 ± 0.000", "0.000 ± 0.000", "-0.750 [0.000]"]
    # random directions in d = 4 dimensions: E|cos| = Gamma(d/2) / (sqrt(pi) Gamma((d+1)/2)), 3 of 4 others
    expected = 0.75 * math.gamma(2) / (math.sqrt(math.pi) * math.gamma(2.5))
    assert abs(float(cells[2]) - expected) < 0.02


def test_no_pairs_is_a_one_line_error(tmp_path):
    done = bench(str(tmp_path / "run.pt"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("no OUT.seed<k>.pt")
