"""Helpers for the `orthocli score` tests: its one-checkpoint JSON entry, the error contract, and
filters with known scores."""

from __future__ import annotations

import json
import shlex

import torch

SUMMARY = "orthocli-score: "


def summary_of(stderr: str) -> tuple[list[str], dict[str, str]]:
    """(the stderr lines before it, the fields of) the machine-readable summary `score` ends stderr with."""
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith(SUMMARY), stderr
    fields = dict(pair.split("=", 1) for pair in shlex.split(lines[-1][len(SUMMARY) :]))
    return lines[:-1], fields


def score_json(run_cli, *args) -> dict:
    """The one checkpoint's entry of the schema-2 document `score --json` prints."""
    result = run_cli("score", *args, "--json")
    assert result.exit_code == 0, result.stderr
    before, fields = summary_of(result.stderr)
    assert before == [] and fields["exit"] == "0"
    doc = json.loads(result.stdout)  # exactly one JSON document
    assert doc["schema_version"] == 2 and doc["exit_code"] == 0
    assert len(doc["checkpoints"]) == 1
    return doc["checkpoints"][0]


def assert_error(result, code: int, *fragments: str) -> str:
    """Exit `code`, nothing on stdout, one `Error: ...` line on stderr, no traceback (`score` ends
    stderr with its summary line, which must agree)."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    if lines and lines[-1].startswith(SUMMARY):
        lines, fields = summary_of(result.stderr)
        assert fields["exit"] == str(code)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def e1_filters(J: int, in_ch: int = 2, k: int = 3) -> torch.Tensor:
    """J copies of one unit basis vector (some negated): exactly representable, all identical."""
    w = torch.zeros(J, in_ch, k, k)
    w[:, 0, 0, 0] = torch.tensor([1.0, -1.0] * J)[:J]
    return w


def orthogonal_filters(J: int, in_ch: int = 2, k: int = 3) -> torch.Tensor:
    return torch.eye(in_ch * k * k)[:J].reshape(J, in_ch, k, k) * 3
