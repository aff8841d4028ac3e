"""`orthocli train --jobs J`: the runs of --baseline, --control random and --seeds N in worker
processes give the files and results of the runs one after another (same --threads), bit for bit;
the main job's arms go side by side by default; Ctrl-C leaves a state --resume continues; a run that
fails is reported and the others kept; jobs, threads and devices are chosen as documented."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import TINY

import orthocli.checkpoints.checkpoint as ckpt_io
import orthocli.training.job_slots as job_slots
import orthocli.training.parallel_runs as parallel_runs
from orthocli.errors import UsageError
from orthocli.training.job_slots import assign_devices, default_jobs, parse_devices, threads_per_run

ARMS = ("", ".baseline", ".random", ".l1")


def _same_files(a: Path, b: Path) -> None:
    """Two checkpoints hold the same tensors byte for byte, the same history (but its timings)
    and the same summary."""
    x, y = ckpt_io.load(a), ckpt_io.load(b)
    assert x.state_dict.keys() == y.state_dict.keys()
    for k, t in x.state_dict.items():
        u = y.state_dict[k]
        assert t.dtype == u.dtype and t.shape == u.shape
        assert t.contiguous().view(torch.uint8).tolist() == u.contiguous().view(torch.uint8).tolist(), k
    untimed = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert untimed(x.extras["history"]) == untimed(y.extras["history"])
    assert x.extras["summary"] == y.extras["summary"]


def _renamed(doc: dict, old: str, new: str) -> str:
    return json.dumps(doc, sort_keys=True).replace(old, new)


# -- the pure choices ------------------------------------------------------------------------------


def test_jobs_threads_and_devices_are_chosen_as_documented():
    assert default_jobs(runs=30, cores=16) == 16 and default_jobs(runs=3, cores=16) == 3
    assert default_jobs(runs=30, cores=1) == 1
    assert default_jobs(runs=30, cores=16, gpus=2) == 4  # two runs per GPU
    assert threads_per_run(jobs=2, cores=2, threads=None) == 1 and threads_per_run(jobs=3, cores=16, threads=None) == 5
    assert threads_per_run(jobs=4, cores=2, threads=None) == 1  # never 0
    assert threads_per_run(jobs=2, cores=16, threads=3) == 3  # --threads given: each run's
    assert assign_devices(5, ["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert assign_devices(2, None) == [None, None]
    assert parse_devices("all", cuda_count=3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert parse_devices("cuda:1, cpu", cuda_count=2) == ["cuda:1", "cpu"]
    for spec, count, message in [
        ("cuda:0", 0, "CUDA is not available here"),
        ("all", 0, "CUDA is not available here"),
        ("cuda:2", 2, "there are 2 CUDA devices (0..1)"),
        ("gpu0", 2, "expected 'all' or a comma list of cuda:N or cpu"),
        ("cuda:0,cuda:0", 2, "a device is named twice"),
    ]:
        with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse_devices(spec, cuda_count=count)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_cuda_device_without_cuda_is_a_usage_error(run_cli, tmp_path):
    result = run_cli("train", *TINY, "--baseline", "--seeds", "2", "--devices", "cuda:0", "-o", tmp_path / "m.pt")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: --devices cuda:0: CUDA is not available here")
    assert list(tmp_path.iterdir()) == []


def test_metrics_are_written_by_one_process(run_cli, tmp_path):
    result = run_cli(
        "train", *TINY, "--baseline", "--jobs", "2", "--metrics", tmp_path / "m.jsonl", "-o", tmp_path / "m.pt"
    )
    assert result.exit_code == 2
    assert "--metrics is written by one process as it trains: give --jobs 1 or leave it out" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_devices_need_runs_to_spread(run_cli, tmp_path):
    result = run_cli("train", *TINY, "--devices", "cpu", "-o", tmp_path / "m.pt")
    assert result.exit_code == 2
    assert "--devices spreads the runs of --baseline or --seeds; one run trains on --device" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- the same runs, bit for bit ----------------------------------------------------------------------

SWEEP = [*TINY, "--baseline", "--control", "random,l1", "--seeds", "2", "--threads", "1", "--json"]  # two matched arms


@pytest.fixture(scope="module")
def one_after_another(tmp_path_factory):
    """The sweep with --jobs 1 (the runs one after another in this process): the reference."""
    from typer.testing import CliRunner

    from orthocli.cli import app

    where = tmp_path_factory.mktemp("sequential")
    result = CliRunner().invoke(app, ["train", *SWEEP, "--jobs", "1", "-o", str(where / "s.pt")], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, result.stderr
    return where, json.loads(result.stdout)


def test_seeds_in_two_workers_equal_one_after_another(run_cli, tmp_path, one_after_another):
    where, reference = one_after_another
    result = run_cli("train", *SWEEP, "--jobs", "2", "-o", tmp_path / "s.pt")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert _renamed(doc, str(tmp_path), str(where)) == _renamed(reference, "", "")
    assert doc["failed"] == [] and doc["summary"]["pairs"] == 2 and "verdict" in doc["summary"]
    for seed in (0, 1):
        for arm in ARMS:
            _same_files(tmp_path / f"s.seed{seed}{arm}.pt", where / f"s.seed{seed}{arm}.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in where.iterdir())  # no state left
    # one display for both workers: each run's start and end, the seeds done
    assert "seed 1 random: done" in result.stderr and "seed 1 l1: done" in result.stderr
    assert "seeds 2/2 done, runs 8/8" in result.stderr


def test_the_main_job_runs_its_arms_side_by_side_by_default(run_cli, tmp_path, monkeypatch):
    for module in (job_slots, parallel_runs):  # a machine with two free cores
        monkeypatch.setattr(module, "free_cores", lambda: 2)
    args = ["train", *TINY, "--baseline", "--threads", "1", "--json"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    terminal = {"ORTHOCLI_JOBS": None, "NO_COLOR": None, "FORCE_COLOR": "1"}  # Rich's display, as on a terminal
    side = run_cli(*args, "-o", tmp_path / "a" / "m.pt", env=terminal)
    assert side.exit_code == 0, side.stderr
    assert "[RePr] Training on cpu" in side.stderr and "[control] Training on cpu" in side.stderr
    assert "experiment 1/1 done, runs 2/2" in side.stderr and "\x1b[" in side.stderr  # drawn by Rich
    alone = run_cli(*args, "--jobs", "1", "-o", tmp_path / "b" / "m.pt", env={"ORTHOCLI_JOBS": None})
    assert alone.exit_code == 0, alone.stderr
    assert "[RePr]" not in alone.stderr and "Control: training, writing" in alone.stderr
    a, b = json.loads(side.stdout), json.loads(alone.stdout)
    assert _renamed(a, str(tmp_path / "a"), str(tmp_path / "b")) == _renamed(b, "", "")
    for arm in ARMS[:2]:
        _same_files(tmp_path / "a" / f"m{arm}.pt", tmp_path / "b" / f"m{arm}.pt")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["m.baseline.pt", "m.pt"]


def test_the_main_job_with_matched_arms_side_by_side_equals_one_after_another(run_cli, tmp_path):
    """--control random,l1: both matched arms wait for the RePr run's counts, then train beside each
    other; the document and every file are those of the arms one after another."""
    args = ["train", *TINY, "--baseline", "--control", "random,l1", "--threads", "1", "--json"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    side = run_cli(*args, "--jobs", "2", "-o", tmp_path / "a" / "m.pt")
    assert side.exit_code == 0, side.stderr
    assert "random: done" in side.stderr and "l1: done" in side.stderr
    alone = run_cli(*args, "--jobs", "1", "-o", tmp_path / "b" / "m.pt")
    assert alone.exit_code == 0, alone.stderr
    a, b = json.loads(side.stdout), json.loads(alone.stdout)
    assert {"baseline", "random", "l1"} <= set(a)
    assert _renamed(a, str(tmp_path / "a"), str(tmp_path / "b")) == _renamed(b, "", "")
    for arm in ARMS:
        _same_files(tmp_path / "a" / f"m{arm}.pt", tmp_path / "b" / f"m{arm}.pt")


def test_a_diverged_run_is_reported_as_one_after_another(run_cli, tmp_path):
    args = ["train", *TINY, "--baseline", "--seeds", "2", "--threads", "1", "--reinit-scale", "1e30", "--json"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    side = run_cli(*args, "--jobs", "2", "-o", tmp_path / "a" / "d.pt")
    alone = run_cli(*args, "--jobs", "1", "-o", tmp_path / "b" / "d.pt")
    assert side.exit_code == alone.exit_code == 8
    assert side.stderr.splitlines()[-1] == alone.stderr.splitlines()[-1]
    assert _renamed(json.loads(side.stdout), str(tmp_path / "a"), str(tmp_path / "b")) == _renamed(
        json.loads(alone.stdout), "", ""
    )
    assert json.loads(side.stdout)["diverged"] == [{"seed": 0, "run": "repr"}]  # seed 1 dropped nothing
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert "d.seed0.pt" not in {p.name for p in (tmp_path / "a").iterdir()}


# -- a run that fails, Ctrl-C, --resume ----------------------------------------------------------------

FAILING_MODEL = """
import torch
from orthocli.network.models import ConvNet


class Broken(ConvNet):
    def forward(self, x):
        if isinstance(x, torch.Tensor) and self.training:  # traced (a Proxy) and evaluated, it runs
            raise RuntimeError("no training for seed 1")
        return super().forward(x)


def net(in_channels, num_classes, input_shape):
    # the run of seed 1 fails inside training, a bug in the run: a builder's own error is a usage error
    return (Broken if torch.initial_seed() == 1 else ConvNet)(in_channels, num_classes, input_shape, width=4)
"""


def test_a_failed_run_is_reported_and_the_others_are_kept(run_cli, tmp_path, monkeypatch):
    (tmp_path / "failing_model.py").write_text(FAILING_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers start with this process's sys.path
    out = tmp_path / "runs" / "f.pt"
    out.parent.mkdir()
    args = ["train", *TINY, "--arch", "failing_model:net", "--baseline", "--seeds", "2", "--jobs", "2", "-o", out]
    result = run_cli(*args, "--json")
    assert result.exit_code == 70
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: runs failed (seed 1 RePr: RuntimeError: no training for seed 1; seed 1 control: RuntimeError: no training"
        " for seed 1); the other runs are kept; continue with the same command and --resume"
    )
    doc = json.loads(result.stdout)
    assert doc["failed"] == [
        {"seed": 1, "run": run, "error": "RuntimeError: no training for seed 1"} for run in ("repr", "baseline")
    ]
    assert doc["summary"]["pairs"] == 1 and doc["summary"]["test_accuracy"]["n"] == 1
    seed0 = doc["seeds"][0]
    assert 0 <= seed0["repr"]["test_accuracy"] <= 1 and seed0["baseline"]["output"] == str(
        out.parent / "f.seed0.baseline.pt"
    )
    assert doc["seeds"][1]["repr"] == {"failed": "RuntimeError: no training for seed 1", "output": None}
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.seed0.baseline.pt", "f.seed0.pt"]
    table = run_cli(*args, "--resume")  # seed 0 read back, seed 1 fails again: the table says so
    assert table.exit_code == 70 and "failed" in table.stdout


SLOW = [*TINY, "--max-samples", "600", "--min-steps", "40", "--cycles", "2", "--max-epochs", "8", "--patience", "8"]


def test_ctrl_c_stops_every_worker_and_resume_finishes_the_same_runs(tmp_path, run_cli):
    args = [*SLOW, "--baseline", "--control", "random,l1", "--seeds", "2", "--threads", "1", "--state-every", "0"]
    (tmp_path / "ref").mkdir()
    reference = run_cli("train", *args, "--jobs", "1", "-o", tmp_path / "ref" / "s.pt", "--json")
    assert reference.exit_code == 0, reference.stderr
    out = tmp_path / "par" / "s.pt"
    out.parent.mkdir()
    cmd = [sys.executable, "-m", "orthocli", "train", *map(str, args), "--jobs", "2", "-o", str(out), "--json"]
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not list(out.parent.glob("*.state")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    children = _children(proc.pid)
    assert children, "no worker process started"
    proc.send_signal(signal.SIGINT)  # to the main process alone: it stops the workers
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        "Error: interrupted; continue with the same command and --resume (finished runs are kept)"
    )
    assert stdout == ""
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "a worker outlived Ctrl-C"
    states = list(out.parent.glob("*.state"))
    assert states and not all((out.parent / f"s.seed{k}{a}.pt").exists() for k in (0, 1) for a in ARMS)
    again = run_cli("train", *args, "--jobs", "2", "-o", out, "--json", "--resume")
    assert again.exit_code == 0, again.stderr
    ref = json.loads(reference.stdout)
    assert _renamed(json.loads(again.stdout)["seeds"], str(out.parent), "X") == _renamed(
        ref["seeds"], str(tmp_path / "ref"), "X"
    )
    assert json.loads(again.stdout)["summary"] == ref["summary"]
    for seed in (0, 1):
        for arm in ARMS:
            _same_files(out.parent / f"s.seed{seed}{arm}.pt", tmp_path / "ref" / f"s.seed{seed}{arm}.pt")
    assert not list(out.parent.glob("*.state"))


def _children(pid: int) -> list[int]:
    """The process ids of `pid`'s worker processes (Linux /proc; multiprocessing's resource tracker,
    which ends when its parent does, left out)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found += [int(c) for c in text.split()]
    return [c for c in found if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
