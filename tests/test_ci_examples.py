"""The CI examples work as shipped: the GitHub Actions job and the shell script it runs, and the
pre-commit hooks, each run on a folder holding a good and a bad checkpoint (exit codes, report)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / ".ci" / "examples" / "score-gate.sh"
WORKFLOW = ROOT / ".ci" / "examples" / "github-actions.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"


def env() -> dict:
    """orthocli on the PATH, as the examples expect it: the console script of this environment."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    base = {k: v for k, v in os.environ.items() if k != "ORTHOCLI_DEBUG"}
    return {**base, "PATH": path, "NO_COLOR": "1", "COLUMNS": "120"}


def run(args: list[str], cwd: Path, **extra) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env={**env(), **extra}, capture_output=True, text=True, timeout=300)


@pytest.fixture
def folder(tmp_path) -> Path:
    """good.pt: orthogonal filters (mean 0); bad.safetensors: identical filters (mean 3/4)."""
    from safetensors.torch import save_file

    d = tmp_path / "checkpoints"
    d.mkdir()
    torch.save({"conv.weight": torch.eye(18)[:4].reshape(4, 2, 3, 3)}, d / "good.pt")
    same = torch.zeros(4, 2, 3, 3)
    same[:, 0, 0, 0] = 1.0
    save_file({"conv.weight": same}, str(d / "bad.safetensors"))
    (d / "notes.txt").write_text("not a checkpoint\n")
    return d


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_shell_script_gates_a_folder(folder, tmp_path):
    report = tmp_path / "report.json"
    proc = run(["sh", str(SCRIPT), str(folder), "0.5"], tmp_path, ORTHOCLI_REPORT=str(report))
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(report.read_text())
    assert doc["gate"]["failing_checkpoints"] == [str(folder / "bad.safetensors")]
    assert "bad.safetensors" in proc.stderr and "FAILED" in proc.stderr
    # the bound and further options reach orthocli
    assert run(["sh", str(SCRIPT), str(folder), "0.75", "--top", "0"], tmp_path).returncode == 0
    doc = json.loads((tmp_path / "score-report.json").read_text())
    assert doc["gate"]["passed"] is True and all(e["most_redundant"] == [] for e in doc["checkpoints"])
    # an unreadable checkpoint outranks the rest; the default bound is 0.5
    (folder / "bad.safetensors").unlink()
    (folder / "cut.pt").write_bytes(b"PK\x03\x04")
    proc = run(["sh", str(SCRIPT), str(folder)], tmp_path)
    assert proc.returncode == 3 and "could not check every checkpoint" in proc.stderr
    doc = json.loads((tmp_path / "score-report.json").read_text())
    assert doc["gate"]["fail_above"] == 0.5 and [e["exit_code"] for e in doc["checkpoints"]] == [3, 0]
    assert run(["sh", str(SCRIPT)], tmp_path).returncode == 2


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_github_actions_job_runs_the_gate_on_the_sample_models(tmp_path):
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key `on` as true
    (job,) = workflow["jobs"].values()
    steps = {step.get("name", step.get("uses")): step for step in job["steps"]}
    assert "actions/checkout@v4" in steps and "actions/setup-python@v5" in steps
    assert (
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
        in (steps["Install orthocli with the CPU build of PyTorch"]["run"])
    )
    assert steps["Keep the report"]["with"]["path"] == job["env"]["ORTHOCLI_REPORT"]
    # The gate step, run as the job runs it: in the repository root, with the job's environment.
    gate = steps["Redundancy gate"]["run"]
    assert ".ci/examples/score-gate.sh" in gate
    work = tmp_path / "repo"
    shutil.copytree(ROOT / ".ci", work / ".ci")
    shutil.copytree(ROOT / "sample_models", work / "sample_models")
    proc = run(["sh", "-c", gate], work, **{k: str(v) for k, v in job["env"].items()})
    assert proc.returncode == 0, proc.stderr
    report = json.loads((work / job["env"]["ORTHOCLI_REPORT"]).read_text())
    assert report["summary"] == {"checkpoints": 2, "scored": 2, "errors": 0}
    # the same step fails on a folder with a redundant checkpoint
    shutil.copy(ROOT / "tests" / "data" / "mtcnn_pnet.pt", work / "sample_models")  # conv4_1 mean 0.321
    assert run(["sh", "-c", gate], work, **{k: str(v) for k, v in job["env"].items()}).returncode == 1


def test_the_pre_commit_hooks(folder, tmp_path):
    hooks = yaml.safe_load(HOOKS.read_text())
    assert [h["id"] for h in hooks] == ["orthocli-score", "orthocli-score-system"]
    names = ["a.pt", "b.pth", "run/c.ckpt", "d.bin", "e.safetensors", "f.jit", "model.py", "README.md", "g.pt.txt"]
    for hook in hooks:
        assert hook["pass_filenames"] is True and hook["language"] in ("python", "system")
        matched = [n for n in names if re.search(hook["files"], n)]
        assert matched == names[:6]
        # pre-commit runs: entry + args + the changed files that match `files`
        command = [*shlex.split(hook["entry"]), *hook["args"]]
        changed = sorted(p.name for p in folder.iterdir() if re.search(hook["files"], p.name))
        assert changed == ["bad.safetensors", "good.pt"]
        proc = run([*command, *changed], folder)
        assert proc.returncode == 1 and "bad.safetensors" in proc.stderr and "good.pt" not in proc.stderr
    assert run([*command, "good.pt"], folder).returncode == 0  # the same for both: only the install differs
