"""orthocli behaving as a CI tool: usage errors in one line for every command, a closed pipe,
the machine-readable summary, the same precision for bound and value, `--format github`, and
`--against` (a gate on regressions); patterns that name no layer in every command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from score_helpers import assert_error, e1_filters, orthogonal_filters, summary_of

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "sample_models" / "mnist1d_convnet.safetensors"


# --- usage errors: one line, exit 2, every command ------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["score", SAMPLE, "--fail-above", "1.5"], "'--fail-above'"),
        (["score", SAMPLE, "--top", "x"], "'--top'"),
        (["score"], "Missing argument"),
        (["score", SAMPLE, "--bogus"], "No such option: --bogus"),
        (["score", SAMPLE, "--format", "xml"], "'--format'"),
        (["prune", SAMPLE, "--ratio", "x"], "'--ratio'"),
        (["prune"], "Missing argument"),
        (["reinit", SAMPLE, "--nope"], "No such option"),
        (["train", "--lr", "fast"], "'--lr'"),
        (["train", "--cycles", "-1"], "'--cycles'"),
        (["export"], "Missing argument"),
        (["export", SAMPLE, "-o"], "requires an argument"),
        (["nosuchcommand"], "No such command"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(run_cli, args, fragment):
    line = assert_error(run_cli(*args), 2, fragment)
    assert "--help" in line and "╭" not in line


def test_help_is_unchanged(run_cli):
    for args in (["--help"], ["score", "--help"], ["train", "-h"]):
        result = run_cli(*args)
        assert result.exit_code == 0 and result.stderr == ""
        assert "Usage: orthocli" in result.stdout and "Options" in result.stdout


def _run(*args, **kw) -> subprocess.Popen:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    env.pop("ORTHOCLI_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "orthocli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        **kw,
    )


def test_orthocli_alone_prints_its_help():
    proc = _run()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and b"Usage: " in out + err and b"COMMAND" in out + err and b"Error" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["score", SAMPLE, "--json"],
        ["score", SAMPLE],
        ["score", SAMPLE, "--format", "github", "--fail-above", "0.1"],
        ["--help"],
    ],
    ids=["json", "table", "github", "help"],
)
def test_a_closed_pipe_exits_141_quietly(args):
    """`orthocli score FILE | head -1`: the reader is gone before the first write. Never 1 (the
    gate's "too redundant"), no traceback, no message."""
    proc = _run(*args)
    proc.stdout.close()  # the reader goes away before orthocli writes anything
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert b"Traceback" not in err and b"Exception ignored" not in err and b"Error" not in err


# --- what score prints on stderr ----------------------------------------------------------------


@pytest.fixture
def runs(tmp_path) -> Path:
    """ok.pt (orthogonal), bad.pt (conv 'a' identical filters, mean 3/4), cut.pt (damaged)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    torch.save({"a.weight": orthogonal_filters(4), "b.weight": orthogonal_filters(3)}, folder / "ok.pt")
    torch.save({"a.weight": e1_filters(4), "b.weight": orthogonal_filters(4)}, folder / "bad.pt")
    (folder / "cut.pt").write_bytes(b"PK\x03\x04 cut short")
    return folder


def test_the_summary_line_is_last_and_machine_readable(run_cli, runs):
    result = run_cli("score", runs, "--fail-above", "0.5", "--json")
    assert result.exit_code == 3
    lines, fields = summary_of(result.stderr)
    assert fields == {
        "files": "3",
        "scored": "2",
        "failed": "1",
        "errors": "1",
        "layers": "4",
        "worst": f"{runs / 'bad.pt'}:a=0.7500",
        "exit": "3",
    }
    assert lines[-1].endswith("; exit code 3")  # the line for people comes before it
    # a path with a space is quoted (JSON); no layer scored: worst=-
    spaced = runs / "with space.pt"
    shutil.copy(runs / "ok.pt", spaced)
    assert summary_of(run_cli("score", spaced).stderr)[1]["worst"] == f"{spaced}:a=0.0000"
    assert summary_of(run_cli("score", runs / "cut.pt").stderr)[1]["worst"] == "-"


def test_the_bound_and_the_value_print_with_the_same_precision(run_cli):
    result = run_cli("score", SAMPLE, "--fail-above", "0.4892", "--json")
    assert result.exit_code == 1
    mean = json.loads(result.stdout)["checkpoints"][0]["layers"][0]["mean"]
    assert 0.4892 < mean < 0.48925  # 0.489 and 0.4892 printed as it was read as a contradiction
    line = summary_of(result.stderr)[0][0]
    assert line == f"Redundancy gate failed: {SAMPLE}: mean score above 0.48920 in features.conv1 ({mean:.5f})"
    result = run_cli("score", SAMPLE, "--fail-above", "0.3")
    assert "mean score above 0.3000 in features.conv1 (0.4892)" in result.stderr


# --- --format github ------------------------------------------------------------------------------


def test_github_annotations_name_the_file_and_the_layer(run_cli, runs, tmp_path):
    odd = tmp_path / "a,b:c%d.pt"  # a comma and a colon end a property; % starts an escape
    shutil.copy(runs / "bad.pt", odd)
    result = run_cli("score", runs, odd, "--fail-above", "0.5", "--format", "github")
    assert result.exit_code == 3
    assert result.stdout.splitlines() == [
        f"::error file={runs / 'bad.pt'},title=orthocli redundancy gate::a: mean score 0.7500 is above 0.5000",
        f"::error file={runs / 'cut.pt'},title=orthocli could not score this checkpoint::{runs / 'cut.pt'}: damaged "
        "or truncated zip archive; re-save or re-download it",
        f"::error file={str(odd).replace('%', '%25').replace(':', '%3A').replace(',', '%2C')},"
        "title=orthocli redundancy gate::a: mean score 0.7500 is above 0.5000",
    ]
    assert "Redundancy gate failed" in result.stderr  # the log keeps the plain lines
    passing = run_cli("score", runs / "ok.pt", "--fail-above", "0.5", "--format", "github")
    assert passing.exit_code == 0 and passing.stdout == ""
    assert_error(run_cli("score", SAMPLE, "--json", "--format", "github"), 2, "--json and --format github")
    assert run_cli("score", SAMPLE, "--format", "json").stdout == run_cli("score", SAMPLE, "--json").stdout


# --- --against: a gate on regressions -------------------------------------------------------------


def _report(run_cli, *args, cwd=None) -> dict:
    result = run_cli("score", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_against_fails_only_where_a_layer_rose(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    torch.save({"a.weight": orthogonal_filters(4), "b.weight": orthogonal_filters(4)}, "runs/m.pt")
    Path("main.json").write_text(json.dumps(_report(run_cli, "runs")))
    # unchanged: passes, however small the tolerance
    result = run_cli("score", "runs", "--against", "main.json", "--tolerance", "0", "--json")
    assert result.exit_code == 0, result.stderr
    entry = json.loads(result.stdout)["checkpoints"][0]
    assert entry["against"] == {
        "report": "main.json",
        "tolerance": 0.0,
        "passed": True,
        "in_report": True,
        "rising_layers": [],
        "new_layers": [],
    }
    # 'a' becomes redundant (mean 0 -> 0.75); 'b' only a little (0 -> 1/3 of one pair of 4: 1/8)
    b = orthogonal_filters(4)
    b[1] = b[0] * 0.5 + b[1] * 0.5 * 3**0.5  # cos(0, 1) = 1/2: two filters score 1/8, mean 1/16
    torch.save({"a.weight": e1_filters(4), "b.weight": b}, "runs/m.pt")
    result = run_cli("score", "./runs/", "--against", "main.json", "--tolerance", "0.1", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["against"] == {
        "report": "main.json",
        "tolerance": 0.1,
        "passed": False,
        "failing_checkpoints": ["runs/m.pt"],
    }
    rising = doc["checkpoints"][0]["against"]["rising_layers"]
    assert [(r["name"], r["before"], r["after"]) for r in rising] == [("a", 0.0, 0.75)]
    assert rising[0]["rise"] == 0.75
    line = summary_of(result.stderr)[0][-1]
    assert line == (
        "Redundancy gate failed: runs/m.pt: mean score rose by more than 0.1000 over main.json in a "
        "(0.0000 -> 0.7500, +0.7500)"
    )
    # 'b' rose by 1/16: over a tolerance of 0.05 it fails too; without --tolerance the default 0.01
    names = lambda res: [r["name"] for r in json.loads(res.stdout)["checkpoints"][0]["against"]["rising_layers"]]  # noqa: E731
    assert names(run_cli("score", "runs", "--against", "main.json", "--tolerance", "0.05", "--json")) == ["a", "b"]
    assert names(run_cli("score", "runs", "--against", "main.json", "--json")) == ["a", "b"]
    # the absolute gate still applies beside it
    both = run_cli("score", "runs", "--against", "main.json", "--tolerance", "1", "--fail-above", "0.5", "--json")
    assert both.exit_code == 1 and json.loads(both.stdout)["gate"]["failing_checkpoints"] == ["runs/m.pt"]
    github = run_cli("score", "runs", "--against", "main.json", "--tolerance", "0.1", "--format", "github")
    assert github.stdout.splitlines() == [
        "::error file=runs/m.pt,title=orthocli redundancy rose::a: mean score 0.0000 -> 0.7500 (+0.7500, more than "
        "0.1000) over main.json"
    ]


def test_against_leaves_new_files_and_layers_uncompared_and_says_so(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    torch.save({"a.weight": orthogonal_filters(4)}, "runs/m.pt")
    Path("main.json").write_text(json.dumps(_report(run_cli, "runs")))
    torch.save({"a.weight": orthogonal_filters(4), "c.weight": e1_filters(4)}, "runs/m.pt")  # a new layer
    torch.save({"a.weight": e1_filters(4)}, "runs/new.pt")  # a new file
    result = run_cli("score", "runs", "--against", "main.json", "--json")
    assert result.exit_code == 0, result.stderr
    entries = {Path(e["checkpoint"]).name: e["against"] for e in json.loads(result.stdout)["checkpoints"]}
    assert (entries["m.pt"]["in_report"], entries["m.pt"]["new_layers"]) == (True, ["c"])
    assert (entries["new.pt"]["in_report"], entries["new.pt"]["new_layers"]) == (False, ["a"])
    lines = summary_of(result.stderr)[0]
    assert lines == [
        "Note: runs/m.pt: c not in main.json; not compared with it",
        "Note: runs/new.pt: not in main.json; not compared with it",
    ]


@pytest.mark.parametrize(
    "content, fragment",
    [(None, "no such file"), ("not json", "not a JSON score report"), ('{"schema_version": 1}', "not a schema-2")],
)
def test_a_bad_stored_report_is_a_usage_error(run_cli, tmp_path, content, fragment):
    report = tmp_path / "r.json"
    if content is not None:
        report.write_text(content)
    assert_error(run_cli("score", SAMPLE, "--against", report), 2, "--against", fragment)


def test_tolerance_needs_against(run_cli):
    assert_error(run_cli("score", SAMPLE, "--tolerance", "0.1"), 2, "give --against too")


# --- a pattern naming no layer, in every command ----------------------------------------------------


def test_patterns_name_a_suffix_and_one_naming_nothing_is_exit_2_in_prune_and_train(run_cli, tmp_path):
    sample = ROOT / "sample_models" / "mnist1d_convnet.pt"
    plan = run_cli("prune", sample, "--exclude", "conv2", "--dry-run", "--json")
    assert plan.exit_code == 0, plan.stderr
    doc = json.loads(plan.stdout)
    assert "features.conv2" in doc["excluded"] and all(layer["name"] != "features.conv2" for layer in doc["layers"])
    line = assert_error(
        run_cli("prune", sample, "--exclude", "conv9", "--dry-run"), 2, "--exclude 'conv9' matches no conv layer"
    )
    assert "features.conv1, features.conv2, features.conv3" in line
    from train_helpers import TINY

    out = tmp_path / "t.pt"
    result = run_cli("train", *TINY, "--layers", "head*", "-o", out)
    assert result.exit_code == 2  # before any training; the lines before it say what train set out to do
    assert result.stderr.splitlines()[-1].startswith("Error: --layers 'head*' matches no conv layer; the layers are")
    assert not out.exists()
