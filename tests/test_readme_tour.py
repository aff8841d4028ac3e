"""The README's tour, run literally as a newcomer types it: each line of its code block, in order,
in a fresh folder holding only the sample models (and `my_data.npz`, the data the tour calls
yours), through the real entry point. Lines that train run with a smaller budget, appended flags
that win over the README's (a later flag wins): the same commands, shorter."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()

# What the test appends to every `train` line: fewer samples, one-epoch phases, one thread; and
# `--seeds 2` where the README asks for 10 (a paired summary needs two seeds).
SMALL_TRAIN = ["--max-samples", "200", "--s1", "1", "--s2", "1", "--patience", "1", "--threads", "1"]
SMALL_SEEDS = ["--seeds", "2"]


def tour_commands() -> list[list[str]]:
    """The tour's code block, one argument list per line (the `# ...` comment cut off)."""
    section = README.split("## A tour")[1].split("\n## ")[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_the_tour_parses_into_orthocli_commands():
    commands = tour_commands()
    assert len(commands) >= 10 and all(c[0] == "orthocli" for c in commands)
    outputs = [c[c.index("-o") + 1] for c in commands if "-o" in c]
    assert len(outputs) == len(set(outputs)), "two lines write one file: the second would stop with exit 5"


def test_the_tour_runs_in_a_fresh_folder(run_cli, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "sample_models", tmp_path / "sample_models")
    data = np.load(ROOT / "orthocli" / "data" / "mnist1d.npz")  # a stand-in for the user's own data
    np.savez(tmp_path / "my_data.npz", x=data["x"][:300].astype(np.float32), y=data["y"][:300])
    monkeypatch.chdir(tmp_path)
    for command in tour_commands():
        args = command[1:]
        if args[0] == "train":
            args = [*args, *SMALL_TRAIN, *(SMALL_SEEDS if "--seeds" in args else [])]
        result = run_cli(*args)
        line = " ".join(command)
        if "--fail-above" in args:  # the gate: 1 says a layer is too redundant, an answer, not a failure
            assert result.exit_code in (0, 1), f"{line}: {result.stderr}"
            assert json.loads(result.stdout)["summary"]["errors"] == 0, line
        else:
            assert result.exit_code == 0, f"{line}: exit {result.exit_code}: {result.stderr}"
        if "-o" in args:
            assert Path(args[args.index("-o") + 1]).parent.is_dir(), line
    written = {"filters.png", "pruned.pt", "sub.pt", "reinit.pt", "final.safetensors", "model.pt2", "small.pt2"}
    assert written <= {p.name for p in tmp_path.iterdir()}
    runs = {p.name for p in (tmp_path / "runs").iterdir()}
    assert {"mine.seed0.pt", "mine.seed1.baseline.pt", "ranking.seed1.random.pt"} <= runs
