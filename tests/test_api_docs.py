"""docs/api.md's example runs: docs/examples/plain_loop.py trains, drops, re-introduces, and a
run stopped and resumed from its saved state ends with the uninterrupted run's weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "docs" / "examples" / "plain_loop.py"
SMALL = ["--s1", "1", "--s2", "1", "--samples", "160", "--threads", "1"]


def run(tmp_path: Path, state: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(EXAMPLE), "--state", str(tmp_path / state), *SMALL, *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_the_plain_loop_example_runs_and_resumes_exactly(tmp_path):
    full = run(tmp_path, "full.pt", "--epochs", "4")
    lines = full.splitlines()
    assert [line.split()[2] for line in lines] == ["standard", "subnet", "standard", "subnet"]
    assert "cycle 1:" in lines[1] and "cycle 2:" in lines[3]
    run(tmp_path, "part.pt", "--epochs", "2")
    resumed = run(tmp_path, "part.pt", "--epochs", "4", "--resume")
    assert resumed.splitlines() == lines[2:]
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("full.pt", "part.pt"))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_every_public_name_and_option_is_documented():
    import dataclasses
    import re

    import orthocli
    from orthocli import ReprConfig

    text = (ROOT / "docs" / "api.md").read_text()
    for name in orthocli.__all__:
        assert f"`{name}" in text, f"orthocli.{name} is not in docs/api.md"
    table = text.split("### Options")[1].split("\n### ")[0]
    for f in dataclasses.fields(ReprConfig):
        assert f"`{f.name}`" in table, f"ReprConfig.{f.name} is not in the options table of docs/api.md"
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / "docs" / target).exists(), f"docs/api.md links to missing {target}"
