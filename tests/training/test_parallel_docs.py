"""docs/parallel.md's SLURM array and GitHub Actions matrix, run as written: each per-seed command
with its seed (the array simulated: its tasks one after another, on the files of one shared
folder), then the gather, which prints what one `orthocli train --seeds N` prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from train_helpers import TINY

DOC = (Path(__file__).parents[2] / "docs" / "parallel.md").read_text()
SEEDS = 2  # the array and the matrix cut to their first two seeds
SMALL = " ".join(TINY)  # for --data my_data.npz: the built-in digits, tiny


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


def _shell(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def _small(text: str) -> str:
    """The documented command with the tiny data set and two seeds, nothing else changed."""
    assert "--data my_data.npz" in text or "--seeds 10" in text
    return text.replace("--data my_data.npz", SMALL).replace("--seeds 10", f"--seeds {SEEDS}")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """`orthocli` on PATH: this checkout's, run by this Python."""
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "orthocli"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m orthocli "$@"\n')
    shim.chmod(0o755)
    root = str(Path(__file__).parents[2])
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        "NO_COLOR": "1",
    }


@pytest.fixture(scope="module")
def single_process(tmp_path_factory, env) -> dict:
    """The sweep as one command: what the gather must print."""
    where = tmp_path_factory.mktemp("single")
    opts = _small(re.search(r'OPTS="([^"]+)"', _blocks("bash")[0]).group(1))
    done = _shell(f"mkdir -p runs && orthocli train {opts} --seeds {SEEDS} -o runs/sweep.pt --json", where, env)
    return json.loads(done.stdout)


def _same_as_one_run(gathered: dict, single: dict) -> None:
    assert gathered["runtime"] is None  # nothing trained in the gather
    assert {k: v for k, v in gathered.items() if k != "runtime"} == {k: v for k, v in single.items() if k != "runtime"}
    assert [s["seed"] for s in gathered["seeds"]] == list(range(SEEDS)) and gathered["summary"]["verdict"]


def test_the_slurm_array_and_its_gather_as_written(tmp_path, env, single_process):
    array, gather = _blocks("bash")[:2]
    assert "#SBATCH --array=0-9" in array and "--seeds 10" in gather
    for task in range(SEEDS):  # the array's tasks, each its own process, in the same folder
        _shell(_small(array), tmp_path, {**env, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_CPUS_PER_TASK": "3"})
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        f"sweep.seed{k}{arm}.pt" for k in range(SEEDS) for arm in ("", ".baseline", ".random")
    )
    _shell(_small(gather), tmp_path, env)
    _same_as_one_run(json.loads((tmp_path / "runs" / "sweep.json").read_text()), single_process)


def test_the_github_actions_matrix_and_its_gather_as_written(tmp_path, env, single_process):
    workflow = yaml.safe_load(_blocks("yaml")[0])
    opts = _small(workflow["env"]["OPTS"])
    seed_job, gather_job = workflow["jobs"]["seed"], workflow["jobs"]["gather"]
    assert gather_job["needs"] == "seed" and seed_job["strategy"]["matrix"]["seed"] == list(range(10))
    train_steps = lambda job: [s["run"] for s in job["steps"] if "orthocli train" in s.get("run", "")]  # noqa: E731
    (per_seed,) = train_steps(seed_job)
    (gather,) = train_steps(gather_job)
    for seed in range(SEEDS):  # the matrix's jobs; their artifacts merged into one runs/ folder, as the gather's
        _shell(per_seed.replace("${{ matrix.seed }}", str(seed)), tmp_path, {**env, "OPTS": opts})
    done = _shell(_small(gather), tmp_path, {**env, "OPTS": opts})
    assert json.loads(done.stdout) == json.loads((tmp_path / "sweep.json").read_text())
    _same_as_one_run(json.loads(done.stdout), single_process)
