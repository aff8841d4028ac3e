"""A training run killed with SIGKILL at random points (during a save included) resumes to the
same final weights as a run never interrupted, and no checkpoint on disk is ever unreadable."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

ARGS = [
    "train",
    "--s1",
    "2",
    "--s2",
    "2",
    "--cycles",
    "2",
    "--max-epochs",
    "9",
    "--max-samples",
    "900",
    "--width",
    "16",
    "--threads",
    "1",
    "--deterministic",
    "--state-every",
    "0",
    "--batch-size",
    "32",
]


def orthocli(*args) -> list[str]:
    return [sys.executable, "-m", "orthocli", *map(str, args)]


def env():
    e = {**os.environ, "NO_COLOR": "1"}
    e.pop("ORTHOCLI_DEBUG", None)
    return e


def readable_files(folder):
    """Every file orthocli left that is not a hidden temporary file loads as a checkpoint."""
    for f in folder.iterdir():
        if not f.name.startswith("."):
            torch.load(f, weights_only=True)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_result(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir(), run_dir.mkdir()
    done = subprocess.run(
        orthocli(*ARGS, "-o", ref_dir / "m.pt"), capture_output=True, text=True, env=env(), timeout=300
    )
    assert done.returncode == 0, done.stderr

    out, state = run_dir / "m.pt", run_dir / "m.pt.state"
    rng, kills, resumed = random.Random(1), 0, 0
    proc = subprocess.Popen(orthocli(*ARGS, "-o", out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    while kills < 3:
        start = time.monotonic()
        while not state.exists() and proc.poll() is None and time.monotonic() - start < 120:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))  # somewhere in the epochs, maybe in the middle of a save
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        readable_files(run_dir)
        resume = ["--resume"] if state.exists() else []
        resumed += bool(resume)
        proc = subprocess.Popen(
            orthocli(*ARGS, "-o", out, *resume), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env()
        )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert kills >= 1 and resumed >= 1, (kills, resumed)
    assert not state.exists()  # removed once the outputs are written

    ref, got = torch.load(ref_dir / "m.pt", weights_only=True), torch.load(out, weights_only=True)
    for k, v in ref["state_dict"].items():
        assert torch.equal(v, got["state_dict"][k]), k
    assert [e["val_acc"] for e in ref["history"]] == [e["val_acc"] for e in got["history"]]
