"""Every command's tables at 80 columns, through the real entry point: each layer name stays whole
on one line (the other columns fold first), and no line is wider than the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

SAMPLE = Path(__file__).parent.parent / "sample_models"
NARROW = {"COLUMNS": "80"}

# 44 and 41 characters: names a deep backbone really has, too long for 7 columns of natural width.
LONG = ["backbone.stage3.block2.depthwise_sep.pointwise", "backbone.stage4.block1.residual.conv_expand", "stem"]


@pytest.fixture
def long_names(tmp_path) -> Path:
    torch.manual_seed(0)
    shapes = [(24, 16, 1, 1), (32, 24, 3, 3), (16, 3, 3, 3)]
    path = tmp_path / "long.pt"
    torch.save({f"{n}.weight": torch.randn(*s) for n, s in zip(LONG, shapes)}, path)
    return path


def narrow(run_cli, *args) -> list[str]:
    result = run_cli(*args, env=NARROW)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    return lines


def whole(lines: list[str], name: str) -> int:
    """On how many lines the name stands whole, as a cell of its own (between borders)."""
    return sum(1 for line in lines if any(cell.strip() == name for cell in line.split("│")))


def test_score_tables(run_cli, long_names, data_dir):
    jit = data_dir / "silero_vad.jit"  # real names of 24 to 32 characters
    lines = narrow(run_cli, "score", long_names, jit, "--top", "3", "--trust")  # TorchScript: --trust only
    doc = json.loads(run_cli("score", long_names, jit, "--top", "3", "--json", "--trust").stdout)
    for entry in doc["checkpoints"]:
        for layer in entry["layers"]:
            in_top = sum(1 for e in entry["most_above_chance"] if e["layer"] == layer["name"])
            assert whole(lines, layer["name"]) == 1 + in_top, layer["name"]


def test_prune_and_reinit_tables(run_cli, long_names, tmp_path):
    pruned = tmp_path / "p.pt"
    lines = narrow(run_cli, "prune", long_names, "-o", pruned, "--no-skip-first", "--no-skip-last", "--ratio", "0.1")
    assert all(whole(lines, name) == 1 for name in LONG)
    lines = narrow(run_cli, "reinit", pruned, "-o", tmp_path / "r.pt")
    assert all(whole(lines, name) == 1 for name in LONG)


def test_export_and_train_tables(run_cli, tmp_path):
    pruned = tmp_path / "p.pt"
    assert run_cli("prune", SAMPLE / "mnist1d_convnet.pt", "-o", pruned).exit_code == 0
    lines = narrow(run_cli, "export", pruned, "--compact", "-o", tmp_path / "small.safetensors")
    assert whole(lines, "features.conv2") == whole(lines, "features.conv3") == 1
    small = ["--cycles", "1", "--s1", "1", "--s2", "1", "--max-epochs", "2", "--max-samples", "100", "--threads", "1"]
    lines = narrow(run_cli, "train", SAMPLE / "mnist1d_convnet.pt", "-o", tmp_path / "t.pt", *small)
    # the cycles table names each layer with its re-introduced count, short names ("conv2:9")
    cycles = [line for line in lines if line.startswith("│     1 │")]
    assert len(cycles) == 1 and "conv2:" in cycles[0] and "conv3:" in cycles[0]
