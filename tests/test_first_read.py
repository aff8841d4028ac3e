"""What a newcomer reads first, at 80 and at 200 columns, through the real entry point (issue 38):
the control's progress lines name what it did, a single seed's result says it is one and where
the interval is, output paths stand whole on their own lines, and `score` divides each layer's
mean by random filters' level and lists the filters furthest above their layer's level, from the
layers the drop rule considers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from score_helpers import orthogonal_filters
from train_helpers import TINY

SAMPLE = Path(__file__).parent.parent / "sample_models" / "mnist1d_convnet.safetensors"
WIDTHS = [80, 200]
BOX = "┏┃┡│└"  # the characters a table's lines start with


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()[:1] in BOX]


def flat(text: str) -> str:
    """The text with every run of whitespace one space: a sentence the terminal wrapped reads whole."""
    return " ".join(text.split())


def cells(line: str) -> list[str]:
    return [c.strip() for c in re.split("[│┃]", line)[1:-1]]


# --- train -------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_train_with_a_control_at_any_width(run_cli, tmp_path, width):
    out = tmp_path / ("a-folder-with-a-long-name-" * 3) / "model.pt"  # a path longer than 80 columns
    result = run_cli("train", *TINY, "--threads", "1", "--baseline", "-o", out, env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    # the control drops nothing, trains no sub-network, re-introduces nothing: its line says where it was
    control = [line for line in result.stderr.splitlines() if line.startswith("control")]
    assert len(control) == 1
    assert re.fullmatch(r"control at epoch 1: val \d+\.\d% -> at epoch 2: val \d+\.\d% \(RePr's cycle 1\)", control[0])
    assert not any(line.startswith("baseline cycle") for line in result.stderr.splitlines())
    repr_line = next(line for line in result.stderr.splitlines() if line.startswith("RePr cycle 1:"))
    assert "before drop" in repr_line and "after re-init" in repr_line  # the method's own phases stay
    header = cells(next(line for line in table_lines(result.stdout) if "difference" in line))
    assert header == ["", "RePr", "control", "difference"]  # the arm is "control" wherever it is named
    # the tables fit; the paths do not need to: each stands whole on its own line under them
    assert all(len(line) <= width for line in table_lines(result.stdout))
    lines = result.stdout.splitlines()
    assert f"  RePr     {out}" in lines
    assert f"  control  {out.with_suffix('.baseline.pt')}" in lines
    assert not any(str(out)[:20] in line for line in table_lines(result.stdout))
    # one seed, said, with the way to an interval
    assert "Result (one seed; same budget and data order)" in flat(result.stdout)
    assert (
        "One seed (--seed 0): the difference between the two runs changes from seed to seed. For the mean"
        " difference over seeds with its 95% interval, run with --seeds N (e.g. --seeds 10)."
    ) in flat(result.stdout)


def test_train_json_keeps_its_keys(train_json):
    doc = train_json("--baseline")
    kept = {"val_accuracy", "test_accuracy", "epochs", "best_epoch", "stopped_early", "cycles", "output"}
    assert kept | {"redundancy", "baseline", "runtime", "config", "data"} <= set(doc)
    assert kept <= set(doc["baseline"])
    assert set(doc["baseline"]["cycles"][0]) >= {"cycle", "val_before_drop", "val_after_subnet", "val_after_reinit"}


def test_a_single_run_lists_its_output_and_says_nothing_of_seeds(run_cli, tmp_path):
    out = tmp_path / "m.pt"
    result = run_cli(
        "train", *TINY, "--threads", "1", "-o", out, "--metrics", tmp_path / "m.jsonl", env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[lines.index("Outputs:") + 1 :] == [f"  RePr     {out}", f"  metrics  {tmp_path / 'm.jsonl'}"]
    assert "seed" not in result.stdout


# --- score -------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_score_reads_each_layer_against_chance_at_any_width(run_cli, width):
    env = {"COLUMNS": str(width)}
    result = run_cli("score", SAMPLE, "--top", "5", env=env)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(run_cli("score", SAMPLE, "--top", "5", "--json", env=env).stdout)["checkpoints"][0]
    rows = table_lines(result.stdout)
    assert all(len(line) <= width for line in rows)
    header = cells(next(line for line in rows if "layer" in line and "mean" in line))
    assert header == ["layer", "shape", "filters", "mean", "random", "× chance", "max"]
    for layer in doc["layers"]:
        row = cells(next(line for line in rows if line.startswith(f"│ {layer['name']} ")))
        assert layer["times_chance"] == pytest.approx(layer["mean"] / layer["chance"])
        assert row[5] == f"{layer['times_chance']:.2f}"
    # the list: the considered layers' filters, ranked by score / their layer's chance level
    chance = {layer["name"]: layer["chance"] for layer in doc["layers"]}
    top = doc["most_above_chance"]
    assert [e["layer"] for e in top] and "features.conv1" not in {e["layer"] for e in top}
    assert all(e["times_chance"] == pytest.approx(e["score"] / chance[e["layer"]]) for e in top)
    assert all(e["times_chance"] > 1 for e in top)
    assert [e["times_chance"] for e in top] == sorted((e["times_chance"] for e in top), reverse=True)
    considered = [
        (n, f, s / chance[n])
        for n in ("features.conv2", "features.conv3")
        for f, s in enumerate(next(la["scores"] for la in doc["layers"] if la["name"] == n))
    ]
    assert [e["times_chance"] for e in top] == pytest.approx(sorted((x for *_, x in considered), reverse=True)[:5])
    listed = [cells(line) for line in rows if cells(line)[:1] and cells(line)[0] in chance and len(cells(line)) == 4]
    assert listed == [[e["layer"], str(e["filter"]), f"{e['score']:.4f}", f"{e['times_chance']:.2f}"] for e in top]
    # the first layer: left out of the list, with its note and why
    assert (
        "features.conv1: more filters than dimensions: they cannot all be orthogonal; the drop rule leaves the"
        " first conv layer alone (--skip-first, the default): not in the list of filters"
    ) in flat(result.stdout)
    left_out = {layer["name"]: layer["left_out_by_rule"] for layer in doc["layers"]}
    assert left_out["features.conv1"] and left_out["features.conv2"] is left_out["features.conv3"] is None
    # the old list stays in the JSON as it was: the highest raw scores, the first layer's among them
    assert doc["most_redundant"][0]["layer"] == "features.conv1"
    assert [e["score"] for e in doc["most_redundant"]] == sorted(
        (e["score"] for e in doc["most_redundant"]), reverse=True
    )


def test_score_says_when_no_considered_filter_is_above_chance(run_cli, save_ckpt):
    import torch

    path = save_ckpt({"a.weight": torch.randn(8, 2, 3, 3), "b.weight": orthogonal_filters(8, in_ch=2)})
    result = run_cli("score", path, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.rstrip().endswith(
        "No filter of a layer the drop rule considers scores above random filters' level."
    )
    doc = json.loads(run_cli("score", path, "--json").stdout)["checkpoints"][0]
    assert doc["most_above_chance"] == [] and doc["layers"][1]["times_chance"] == 0


def test_the_score_output_in_docs_is_what_score_prints(run_cli):
    """docs/commands.md shows the sample model's tables at 80 columns: they are these."""
    docs = (Path(__file__).parent.parent / "docs" / "commands.md").read_text()
    shown = docs.split("What it prints for the sample model, at 80 columns (`--top 3`):")[1]
    shown = shown.split("```\n")[1]
    result = run_cli("score", SAMPLE, "--top", "3", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    assert [line.rstrip() for line in shown.splitlines()] == [line.rstrip() for line in result.stdout.splitlines()]


def test_dead_filters_are_a_note_under_the_table(run_cli, save_ckpt):
    import torch

    torch.manual_seed(0)
    second = torch.randn(8, 4, 3, 3)
    second[[1, 5]] = 0
    path = save_ckpt({"a.weight": torch.randn(4, 2, 3, 3), "b.weight": second})
    result = run_cli("score", path, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    assert "b: 2 dead filters (all zeros): 1, 5" in result.stdout.splitlines()
