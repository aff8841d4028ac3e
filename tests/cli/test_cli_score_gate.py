"""`orthocli score --fail-above`: the CI gate and its exit codes."""

from __future__ import annotations

import json

import pytest
from score_helpers import e1_filters, orthogonal_filters

# --- the CI gate -----------------------------------------------------------------------------


@pytest.fixture
def gate_ckpt(save_ckpt):
    # "redundant": 4 identical filters, mean exactly 3/4; "clean": orthogonal, mean 0.
    return save_ckpt({"redundant.weight": e1_filters(4), "clean.weight": orthogonal_filters(4)})


def test_gate_fails_above_bound(run_cli, gate_ckpt):
    result = run_cli("score", gate_ckpt, "--fail-above", "0.5", "--json")
    assert result.exit_code == 1
    top = json.loads(result.stdout)
    assert top["exit_code"] == 1
    assert top["gate"] == {"fail_above": 0.5, "passed": False, "failing_checkpoints": [str(gate_ckpt)]}
    doc = top["checkpoints"][0]
    assert doc["exit_code"] == 1
    assert doc["gate"] == {"fail_above": 0.5, "passed": False, "failing_layers": ["redundant"]}
    assert "redundant" in result.stderr and "clean" not in result.stderr


@pytest.mark.parametrize("bound", ["0.8", "0.75", "1"])
def test_gate_passes_at_or_below_bound(run_cli, gate_ckpt, bound):
    result = run_cli("score", gate_ckpt, "--fail-above", bound, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["gate"] == {"fail_above": float(bound), "passed": True, "failing_checkpoints": []}
    assert doc["checkpoints"][0]["gate"] == {"fail_above": float(bound), "passed": True, "failing_layers": []}


def test_gate_only_counts_scored_layers(run_cli, gate_ckpt):
    assert run_cli("score", gate_ckpt, "--fail-above", "0", "--exclude", "redundant", "--json").exit_code == 0
    assert run_cli("score", gate_ckpt, "--fail-above", "0").exit_code == 1  # human output too


@pytest.mark.parametrize("args", [["--fail-above", "2"], ["--fail-above", "-0.1"], ["--top", "-1"], ["--top", "x"]])
def test_bad_option_values_are_usage_errors(run_cli, gate_ckpt, args):
    result = run_cli("score", gate_ckpt, *args)
    assert result.exit_code == 2
    assert args[0] in result.stderr
    assert result.stdout == ""
