"""orthocli as a program: --help, --version, startup without torch, the console script."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orthocli import __version__

ROOT = Path(__file__).parents[2]

# --- the app as a program ---------------------------------------------------------------------


def test_help_lists_commands(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0
    for name in ("score", "prune", "reinit", "train", "export"):
        assert name in result.stdout
    score_help = run_cli("score", "--help")
    assert score_help.exit_code == 0
    for flag in ("--layers", "--exclude", "--top", "--fail-above", "--key", "--trust", "--json"):
        assert flag in score_help.stdout


def test_version(run_cli):
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"orthocli {__version__}"


def _run(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("ORTHOCLI_DEBUG", None)
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, **kw)


def _imported(*args) -> list[str]:
    """The modules `python -X importtime -m orthocli ARGS` imports."""
    proc = _run(sys.executable, "-X", "importtime", "-m", "orthocli", *map(str, args))
    assert proc.returncode == 0, proc.stderr
    # "import time: self | cumulative | name", the name indented by nesting depth: a torch
    # imported by some orthocli module shows as "|     torch", not only as "| torch".
    modules = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "orthocli" in modules  # the report is there
    return modules


def test_help_does_not_import_torch():
    for args in (["--help"], ["score", "--help"]):
        modules = _imported(*args)
        assert "typer" in modules  # help is Typer's
        assert [m for m in modules if m.split(".")[0] in ("torch", "numpy")] == []


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "sample_models" / "mnist1d_convnet.safetensors",
        ROOT / "sample_models" / "mnist1d_convnet.pt",  # records its architecture: a ConvNet
        ROOT / "tests" / "data" / "crepe_tiny.pt",  # a torch zip
        ROOT / "tests" / "data" / "lpips_alex.pth",  # a legacy pickle
    ],
    ids=lambda p: p.name,
)
def test_score_does_not_import_torch(path):
    """The CI gate: `score FILE --json` imports neither torch nor the safetensors package, nor the
    CLI's own Typer, Click, pydantic or Rich (the fast path, cli/fast_args.py)."""
    modules = _imported("score", path, "--json", "--fail-above", "1")
    assert "numpy" in modules and "orthocli.cli.fast_args" in modules
    heavy = ("torch", "safetensors", "typer", "click", "pydantic", "rich")
    assert [m for m in modules if m.split(".")[0] in heavy] == []


def test_debug_shows_a_traceback(tmp_path):
    proc = _run(sys.executable, "-m", "orthocli", "--debug", "score", str(tmp_path / "nope.pt"))
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr and "InputFileError" in proc.stderr
    proc = _run(sys.executable, "-m", "orthocli", "score", str(tmp_path / "nope.pt"))
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: {tmp_path / 'nope.pt'}: no such file"
    assert proc.stderr.splitlines()[1].startswith("orthocli-score: files=1 ")


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "orthocli"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orthocli"]


def test_console_script(data_dir):
    proc = _run(*_console_script(), "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"orthocli {__version__}"
    proc = _run(*_console_script(), "score", str(data_dir / "mtcnn_pnet.pt"), "--json", "--fail-above", "1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["checkpoints"][0]
    assert [layer["name"] for layer in doc["layers"]] == ["conv1", "conv2", "conv3", "conv4_1", "conv4_2"]
    assert doc["gate"]["passed"] is True
    assert all(math.isfinite(s) for layer in doc["layers"] for s in layer["scores"])
