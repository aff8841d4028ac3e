"""`orthocli export` refusals with their exit codes: a missing architecture or drop record, the
output rules, a failed verification that leaves no file; and `export --help` without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from export_helpers import (
    convnet_arch,
    trained_like,
)

import orthocli.checkpoints.checkpoint as checkpoint

# the tests load TorchScript files themselves; torch 2.9+ marks torch.jit.load deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def test_bare_state_dict_to_torchscript_is_refused(run_cli, tmp_path):
    src = tmp_path / "bare.pt"
    torch.save(trained_like(convnet_arch()).state_dict(), src)
    result = run_cli("export", src, "-o", tmp_path / "m.ts")
    assert result.exit_code == 4
    assert "torchscript export needs the model architecture" in result.stderr
    result = run_cli("export", src, "-o", tmp_path / "m.safetensors", "--compact")
    assert result.exit_code == 4
    assert "--compact needs the model architecture" in result.stderr


def test_compact_without_drop_record_is_refused(run_cli, tmp_path):
    src = tmp_path / "plain.pt"
    checkpoint.save(src, checkpoint.make_payload(trained_like(convnet_arch()).state_dict(), arch=convnet_arch()))
    result = run_cli("export", src, "-o", tmp_path / "m.pt", "--compact")
    assert result.exit_code == 4
    assert "drops no filters" in result.stderr


def test_output_rules(run_cli, pruned, tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    result = run_cli("export", pruned, "-o", out)
    assert result.exit_code == 5
    assert "already exists; use --force" in result.stderr
    assert out.read_bytes() == b"keep me"
    assert run_cli("export", pruned, "-o", out, "--force").exit_code == 0
    result = run_cli("export", pruned, "-o", pruned, "--format", "orthocli", "--force")
    assert result.exit_code == 5
    assert "is the input file" in result.stderr
    result = run_cli("export", pruned, "-o", tmp_path / "m.weights")
    assert result.exit_code == 2
    assert "cannot tell the format" in result.stderr


def test_failed_verification_leaves_no_file(run_cli, pruned, tmp_path, monkeypatch):
    import orthocli.export.pipeline as ex

    real = ex._load_back

    def corrupt(fmt, path):
        runnable, state, meta = real(fmt, path)
        state["classifier.bias"] += 1.0
        return runnable, state, meta

    monkeypatch.setattr(ex, "_load_back", corrupt)
    result = run_cli("export", pruned, "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 4
    assert "verification failed" in result.stderr and "nothing was written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned.pt"]


def test_export_help_does_not_import_torch():
    code = (
        "import sys; from orthocli.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['export', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--compact' in r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
