"""The fast path of `orthocli score` (cli/fast_args.py) parses what Typer parses, into the same
ScoreArgs, and hands everything else to Typer; its option table is score.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from orthocli.cli import fast_args, output, score_run
from orthocli.cli.score_run import ScoreArgs


def typer_params() -> dict:
    """score's options as Typer builds them: option name -> (field, kind)."""
    from orthocli.cli import app

    command = typer.main.get_command(app).commands["score"]
    table = {}
    for p in command.params:
        if not p.opts[0].startswith("-"):
            continue  # the CHECKPOINTS argument
        bounds = p if hasattr(p, "min") else p.type  # Typer >= 0.29 keeps them on the option; Click on its type
        low, high = getattr(bounds, "min", None), getattr(bounds, "max", None)
        annotation = getattr(getattr(p, "type_descriptor", None), "annotation", None) or getattr(p, "type", None)
        if p.is_flag:
            kind = "flag"
        elif p.multiple:
            kind = "text list"
        elif p.name == "output_format":
            kind = "format"
        elif (low, high) == (0, None) and "int" in str(annotation).lower():
            kind = "count"
        elif (low, high) == (0, 1):
            kind = "fraction"
        elif (low, high) == (0, None):
            kind = "non-negative"
        elif "path" in str(annotation).lower():
            kind = "path"
        else:
            kind = "text"
        for name in [*p.opts, *p.secondary_opts]:
            table[name] = (p.name, kind)
    return table


def test_the_table_is_the_typer_commands():
    assert typer_params() == fast_args.OPTIONS
    assert set(score_run.FORMATS) == {"table", "json", "github"}


def parsed_by_typer(run_cli, monkeypatch, argv: list[str]) -> ScoreArgs:
    seen = []
    monkeypatch.setattr(score_run, "run", lambda args: seen.append(args) or 0)
    result = run_cli(*argv)
    assert result.exit_code == 0, result.stderr
    return seen[0]


SAME = [
    ["score", "a.pt"],
    ["score", "runs/", "b.safetensors", "--json"],
    ["score", "runs", "--exclude", "conv1", "--fail-above", "0.3", "--json"],
    ["score", "--fail-above=0.25", "runs", "-x", "conv1", "-x", "features.*", "-l", "conv2", "--layers=head"],
    ["score", "r", "--top", "5", "-k", "0", "--key", "state_dict", "--trust"],
    ["score", "r", "-k3", "--format", "github", "--against", "main.json", "--tolerance", "0.02"],
    ["score", "r", "--format=json", "--fail-above", "1", "--tolerance", ".5", "--against=x.json"],
    ["score", "r", "--fail-above", "0", "--tolerance", "1e-3", "--against", "x.json"],
    ["score", "--", "-weird-name.pt", "--json"],
    ["score", "-", "--json"],
    ["--debug", "score", "a.pt"],
]


@pytest.mark.parametrize("argv", SAME, ids=lambda a: " ".join(a))
def test_fast_and_typer_parse_the_same(run_cli, monkeypatch, argv):
    fast = fast_args.score_args(argv)
    assert fast is not None
    assert fast == parsed_by_typer(run_cli, monkeypatch, argv)
    assert output.DEBUG["on"] is (argv[0] == "--debug")


LEFT_TO_TYPER = [
    [],
    ["--help"],
    ["score", "--help"],
    ["score", "-h", "a.pt"],
    ["score"],
    ["score", "--json"],
    ["prune", "a.pt"],
    ["--version"],
    ["score", "a.pt", "--bogus"],
    ["score", "a.pt", "--fail-above", "1.5"],
    ["score", "a.pt", "--fail-above", "-0.1"],
    ["score", "a.pt", "--fail-above", "nan"],
    ["score", "a.pt", "--fail-above", "0x1"],
    ["score", "a.pt", "--top", "-1"],
    ["score", "a.pt", "--top", "x"],
    ["score", "a.pt", "--top", "007"],
    ["score", "a.pt", "--top"],
    ["score", "a.pt", "--format", "xml"],
    ["score", "a.pt", "--json=yes"],
    ["score", "a.pt", "--key", "--json"],
    ["score", "a.pt", "-kx"],
    ["score", "a.pt", "--no-trust"],
]


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=lambda a: " ".join(a) or "nothing")
def test_anything_else_is_left_to_typer(argv):
    assert fast_args.score_args(argv) is None


def test_the_environment_switches_debug_on(monkeypatch):
    monkeypatch.setenv("ORTHOCLI_DEBUG", "1")
    assert fast_args.score_args(["score", "a.pt"]) == ScoreArgs(checkpoints=[Path("a.pt")])
    assert output.DEBUG["on"] is True


@pytest.mark.parametrize(
    "extra", [["--json"], [], ["--format", "github"], ["--exclude", "nothing"]], ids=["json", "table", "github", "bad"]
)
def test_the_fast_path_prints_what_the_typer_path_prints(run_cli, tmp_path, extra):
    """The console script (fast path) against the app (Typer path): the same stdout, stderr and code."""
    import os
    import subprocess
    import sys

    import torch
    from score_helpers import e1_filters, orthogonal_filters

    torch.save({"a.weight": orthogonal_filters(4), "b.weight": orthogonal_filters(3)}, tmp_path / "ok.pt")
    torch.save({"a.weight": e1_filters(4)}, tmp_path / "bad.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 cut short")
    argv = ["score", tmp_path, "--fail-above", "0.5", *extra]
    assert fast_args.score_args([str(a) for a in argv]) is not None
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("ORTHOCLI_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "orthocli", *map(str, argv)], capture_output=True, text=True, env=env, timeout=120
    )
    typer_path = run_cli(*argv)
    assert (proc.returncode, proc.stdout, proc.stderr) == (typer_path.exit_code, typer_path.stdout, typer_path.stderr)
    assert proc.returncode in (2, 3)
