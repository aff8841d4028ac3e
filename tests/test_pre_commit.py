"""The pre-commit hook for real: pre-commit installs the project's hook from a local clone, as
docs/ci.md's example says (the repository and the commit replaced by local ones), and a `git
commit` of a redundant checkpoint is refused while a good one goes in.

The `language: python` hook has pre-commit build its own environment with pip, from PyPI: that
test runs where `CI` is set (.ci/run, where PyPI is reachable) and checks the install is light
(no torch, under a minute, under 150 MB) and scores as this environment does."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs" / "ci.md"

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _env(tmp_path: Path) -> dict:
    """This environment's executables first on the PATH (orthocli, pre-commit); git with no user
    or system configuration but an identity; pre-commit's cache inside tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT", "ORTHOCLI_"))}
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "HOME": str(tmp_path / "home"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
        "NO_COLOR": "1",
    }


def _run(args: list, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _hook_repository(tmp_path: Path, env: dict) -> tuple[Path, str]:
    """A local clone of orthocli as it is in this working tree: what `repo:` points at. Returns it
    and the commit to pin in `rev:`."""
    repo = tmp_path / "orthocli"
    repo.mkdir()
    for name in (".pre-commit-hooks.yaml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "orthocli", repo / "orthocli", ignore=shutil.ignore_patterns("__pycache__"))
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "orthocli"]):
        assert _run(args, repo, env).returncode == 0
    return repo, _run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()


def _docs_config(repo: Path, rev: str, hook: str) -> str:
    """The .pre-commit-config.yaml of docs/ci.md, with the local clone, its commit and `hook`."""
    block = re.search(r"```yaml\n(# \.pre-commit-config\.yaml.*?)```", DOCS.read_text(), re.S).group(1)
    config = yaml.safe_load(block)
    (entry,) = config["repos"]
    assert re.fullmatch(r"[0-9a-f]{40}", entry["rev"])  # the docs pin a commit, never a tag that may not exist
    entry["repo"], entry["rev"] = str(repo), rev
    (hook_config,) = entry["hooks"]
    hook_config["id"] = hook
    return yaml.safe_dump(config)


def _user_repository(tmp_path: Path, env: dict, config: str) -> Path:
    user = tmp_path / "project"
    (user / "checkpoints").mkdir(parents=True)
    (user / ".pre-commit-config.yaml").write_text(config)
    shutil.copy(ROOT / "sample_models" / "mnist1d_convnet.safetensors", user / "checkpoints" / "good.safetensors")
    shutil.copy(ROOT / "tests" / "data" / "crepe_tiny.pt", user / "checkpoints" / "crepe.pt")
    same = torch.zeros(8, 4, 3, 3)
    same[:, 0, 0, 0] = 1.0  # eight copies of one filter: mean score 7/8
    torch.save({"features.conv2.weight": same, "features.conv1.weight": torch.randn(8, 1, 3, 3)}, user / "bad.pt")
    for args in (["git", "init", "-q"], ["git", "add", ".pre-commit-config.yaml"], ["git", "commit", "-q", "-m", "c"]):
        assert _run(args, user, env).returncode == 0, args
    return user


def _commits(user: Path, env: dict) -> int:
    return int(_run(["git", "rev-list", "--count", "HEAD"], user, env).stdout)


def _check_the_gate_on_commits(user: Path, env: dict) -> None:
    assert _run(["git", "add", "checkpoints"], user, env).returncode == 0
    proc = _run(["git", "commit", "-m", "good checkpoints"], user, env)
    out = proc.stdout + proc.stderr  # pre-commit reports on stderr
    assert proc.returncode == 0, out
    assert re.search(r"orthocli redundancy gate.*Passed", out)
    shutil.move(user / "bad.pt", user / "checkpoints" / "bad.pt")
    assert _run(["git", "add", "checkpoints/bad.pt"], user, env).returncode == 0
    proc = _run(["git", "commit", "-m", "a redundant checkpoint"], user, env)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "Failed" in out and "Redundancy gate failed: checkpoints/bad.pt" in out and "features.conv2" in out
    assert "orthocli-score: files=1 " in out
    assert _commits(user, env) == 2  # the config and the good checkpoints: the bad one was refused


def test_a_redundant_checkpoint_cannot_be_committed(tmp_path):
    """Offline: the hook that runs the orthocli already installed (`language: system`)."""
    env = _env(tmp_path)
    repo, rev = _hook_repository(tmp_path, env)
    user = _user_repository(tmp_path, env, _docs_config(repo, rev, "orthocli-score-system"))
    proc = _run(["pre-commit", "install"], user, env)
    assert proc.returncode == 0, proc.stderr
    _check_the_gate_on_commits(user, env)


@pytest.mark.skipif(
    not os.environ.get("CI"),
    reason="pre-commit builds the hook's environment with pip from PyPI: runs in CI (.ci/run sets CI)",
)
def test_the_hook_installs_without_torch_in_seconds_and_scores_the_same(tmp_path):
    env = _env(tmp_path)
    repo, rev = _hook_repository(tmp_path, env)
    user = _user_repository(tmp_path, env, _docs_config(repo, rev, "orthocli-score"))
    start = time.monotonic()
    proc = _run(["pre-commit", "install-hooks"], user, env, timeout=600)
    seconds = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (venv,) = Path(env["PRE_COMMIT_HOME"]).glob("repo*/py_env-*")
    size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
    print(f"pre-commit install-hooks: {seconds:.1f} s, hook environment {size / 2**20:.0f} MiB")
    assert seconds < 60 and size < 150 * 2**20
    python = venv / "bin" / "python"
    assert _run([python, "-c", "import torch"], user, env).returncode != 0  # no torch in it
    # the hook's orthocli scores a safetensors file and a zip checkpoint as this environment does
    files = [user / "checkpoints" / "good.safetensors", user / "checkpoints" / "crepe.pt"]
    light = _run([venv / "bin" / "orthocli", "score", *files, "--json"], user, env)
    here = _run([sys.executable, "-m", "orthocli", "score", *files, "--json"], user, env)
    assert light.returncode == here.returncode == 0, light.stderr
    assert json.loads(light.stdout)["checkpoints"] == json.loads(here.stdout)["checkpoints"]
    assert _run(["pre-commit", "install"], user, env).returncode == 0
    _check_the_gate_on_commits(user, env)
