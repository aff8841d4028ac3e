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


def _job() -> tuple[dict, dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key `on` as true
    (job,) = workflow["jobs"].values()
    return job, {step.get("name", step.get("uses")): step for step in job["steps"]}


def _user_repository(tmp_path: Path) -> Path:
    """A user's repository as the workflow's comment says to set it up: the workflow copied to
    .github/workflows/, checkpoints in a folder; nothing of this repository's (no .ci/)."""
    repo = tmp_path / "user"
    (repo / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW, repo / ".github" / "workflows" / "redundancy-gate.yml")
    shutil.copytree(ROOT / "sample_models", repo / "checkpoints", ignore=shutil.ignore_patterns("data", "*.md", "*.sh"))
    return repo


def test_the_github_actions_job_is_light_and_cached():
    job, steps = _job()
    assert "actions/checkout@v4" in steps and steps["actions/checkout@v4"]["with"]["lfs"] is True
    setup = steps["actions/setup-python@v5"]["with"]
    # the pip cache is keyed on the workflow file itself, which exists in every repository that uses it
    assert setup["cache"] == "pip" and setup["cache-dependency-path"] == ".github/workflows/redundancy-gate.yml"
    install = steps["Install orthocli without PyTorch"]["run"]
    assert install.strip() == 'pip install "$ORTHOCLI"' and "torch" not in install
    assert job["env"]["ORTHOCLI"].startswith("orthocli @ git+https://")
    assert steps["Keep the report"]["with"]["path"] == "score-report.json"
    assert steps["Keep the report"]["if"] == steps["Write the report"]["if"] == "always()"


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_the_github_actions_steps_run_as_written_in_a_users_repository(tmp_path):
    job, steps = _job()
    repo = _user_repository(tmp_path)
    env = {k: str(v) for k, v in job["env"].items()}
    gate, report = steps["Redundancy gate"]["run"], steps["Write the report"]["run"]
    proc = run(["sh", "-c", gate], repo, **env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # no annotation: every layer passes
    assert run(["sh", "-c", report], repo, **env).returncode == 0
    doc = json.loads((repo / "score-report.json").read_text())
    assert doc["summary"] == {"checkpoints": 2, "scored": 2, "errors": 0}
    assert doc["gate"]["passed"] is True
    # a more redundant real checkpoint: the step fails and the pull request shows where
    shutil.copy(ROOT / "tests" / "data" / "mtcnn_pnet.pt", repo / "checkpoints")  # conv4_1 mean 0.321
    proc = run(["sh", "-c", gate], repo, **env)
    assert proc.returncode == 1
    assert proc.stdout.startswith(
        "::error file=checkpoints/mtcnn_pnet.pt,title=orthocli redundancy gate::conv4_1: mean score 0.3213 is above 0.3000"
    )
    assert run(["sh", "-c", report], repo, **env).returncode == 0  # the report is written all the same
    assert json.loads((repo / "score-report.json").read_text())["gate"]["failing_checkpoints"] == [
        "checkpoints/mtcnn_pnet.pt"
    ]


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


@pytest.mark.skipif(
    not os.environ.get("CI") or shutil.which("sh") is None,
    reason="the install step downloads orthocli's dependencies from PyPI: runs in CI (.ci/run sets CI)",
)
def test_the_github_actions_install_step_brings_no_torch(tmp_path):
    """The install step as written, in a fresh virtual environment, with ORTHOCLI pointing at this
    working tree; then the gate step runs on that environment's orthocli."""
    import venv

    job, steps = _job()
    repo = _user_repository(tmp_path)
    source = tmp_path / "orthocli-source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", ".ci-venv", "tests", "benchmarks", "__pycache__")
    )
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    env = {k: str(v) for k, v in job["env"].items()}
    env["ORTHOCLI"] = str(source)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    proc = subprocess.run(
        ["sh", "-c", steps["Install orthocli without PyTorch"]["run"]],
        cwd=repo,
        env={**os.environ, **env, "PATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert subprocess.run([bin_dir / "python", "-c", "import torch"], capture_output=True).returncode != 0
    shutil.copy(ROOT / "tests" / "data" / "mtcnn_pnet.pt", repo / "checkpoints")
    proc = subprocess.run(
        ["sh", "-c", steps["Redundancy gate"]["run"]],
        cwd=repo,
        env={**os.environ, **env, "PATH": path, "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout.startswith("::error file=checkpoints/mtcnn_pnet.pt,")
