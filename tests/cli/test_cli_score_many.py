"""`orthocli score` over many checkpoints in one call, through the real entry point: paths,
folders and globs; one JSON document; the gate over all files; unreadable files among good ones."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from orthocli.method.orthogonality import orthogonality_scores


def identical_filters(J: int = 4) -> torch.Tensor:
    w = torch.zeros(J, 2, 3, 3)
    w[:, 0, 0, 0] = 1.0
    return w  # every pair parallel: each filter scores (J-1)/J


def orthogonal_filters(J: int = 4) -> torch.Tensor:
    return torch.eye(18)[:J].reshape(J, 2, 3, 3)


@pytest.fixture
def runs(tmp_path):
    """A folder as a training run leaves it: two good checkpoints, one too redundant, and files
    that are not checkpoints."""
    folder = tmp_path / "runs"
    folder.mkdir()
    torch.save({"a.weight": orthogonal_filters(), "b.weight": orthogonal_filters(3)}, folder / "epoch_01.pt")
    from safetensors.torch import save_file

    save_file({"a.weight": orthogonal_filters(5)}, str(folder / "epoch_02.safetensors"))
    torch.save({"a.weight": identical_filters(), "b.weight": orthogonal_filters()}, folder / "epoch_03.pth")
    (folder / "README.md").write_text("notes\n")
    (folder / "metrics.json").write_text("{}\n")
    (folder / "sub").mkdir()
    torch.save({"a.weight": identical_filters()}, folder / "sub" / "nested.pt")  # not taken: folders are flat
    return folder


def run_json(run_cli, *args, code: int = 0) -> dict:
    result = run_cli("score", *args, "--json")
    assert result.exit_code == code, (result.stdout, result.stderr)
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 2 and doc["exit_code"] == code
    return doc


def names(doc: dict) -> list[str]:
    return [entry["checkpoint"] for entry in doc["checkpoints"]]


def test_a_folder_means_its_checkpoint_files(run_cli, runs):
    doc = run_json(run_cli, runs)
    assert names(doc) == [str(runs / n) for n in ("epoch_01.pt", "epoch_02.safetensors", "epoch_03.pth")]
    assert [e["format"] for e in doc["checkpoints"]] == ["torch-zip", "safetensors", "torch-zip"]
    assert doc["summary"] == {"checkpoints": 3, "scored": 3, "errors": 0}
    third = doc["checkpoints"][2]
    assert [layer["name"] for layer in third["layers"]] == ["a", "b"]
    assert third["layers"][0]["scores"] == pytest.approx([3 / 4] * 4)


def test_a_folder_finds_a_checkpoint_without_a_suffix_by_its_content(run_cli, runs):
    torch.save({"c.weight": orthogonal_filters()}, runs / "last")  # no suffix: found by its zip signature
    (runs / "notes").write_text("not a checkpoint\n")  # no suffix, not a checkpoint: skipped
    np.savez(runs / "data.npz", x=np.zeros(3))  # a zip too, but training data: skipped
    found = names(run_json(run_cli, runs))
    assert str(runs / "last") in found
    assert str(runs / "notes") not in found and str(runs / "data.npz") not in found


def test_each_file_scores_as_it_would_alone(run_cli, runs, tmp_path):
    many = run_json(run_cli, runs / "epoch_03.pth", runs / "epoch_01.pt", "--top", "3")
    for entry in many["checkpoints"]:
        alone = run_json(run_cli, entry["checkpoint"], "--top", "3")
        assert alone["checkpoints"] == [entry]
    sd = torch.load(runs / "epoch_03.pth", weights_only=True)
    assert many["checkpoints"][0]["layers"][1]["scores"] == pytest.approx(
        orthogonality_scores(sd["b.weight"]).tolist(), abs=1e-6
    )


def test_paths_folders_and_quoted_globs_mix_in_order_each_file_once(run_cli, runs, tmp_path):
    extra = tmp_path / "extra.pt"
    shutil.copy(runs / "epoch_01.pt", extra)
    # The glob is passed through unexpanded, as a quoted pattern in a CI script is.
    doc = run_json(run_cli, extra, str(runs / "*.pt*"), runs / "epoch_01.pt", runs)
    assert names(doc) == [
        str(extra),
        str(runs / "epoch_01.pt"),
        str(runs / "epoch_03.pth"),
        str(runs / "epoch_02.safetensors"),
    ]


def test_the_gate_fails_if_any_file_fails_and_names_it(run_cli, runs):
    result = run_cli("score", runs, "--fail-above", "0.5", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    bad = str(runs / "epoch_03.pth")
    assert doc["gate"] == {"fail_above": 0.5, "passed": False, "failing_checkpoints": [bad]}
    assert [e["exit_code"] for e in doc["checkpoints"]] == [0, 0, 1]
    assert doc["checkpoints"][2]["gate"]["failing_layers"] == ["a"]
    assert f"Redundancy gate failed: {bad}: mean score above 0.5000 in a (0.7500)" in result.stderr
    assert f"1 of 3 checkpoints failed the gate ({bad})" in result.stderr
    # the same verdict without --json, and a pass when the bound allows it
    assert run_cli("score", runs, "--fail-above", "0.5").exit_code == 1
    assert run_json(run_cli, runs, "--fail-above", "0.75")["gate"]["passed"] is True


def test_an_unreadable_file_is_reported_and_the_others_still_scored(run_cli, runs):
    (runs / "epoch_04.pt").write_bytes(b"PK\x03\x04 cut short")
    result = run_cli("score", runs, "--json")
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    broken = doc["checkpoints"][3]
    assert broken["checkpoint"] == str(runs / "epoch_04.pt")
    assert broken["exit_code"] == 3 and "damaged or truncated" in broken["error"]
    assert all(broken[k] is None for k in ("format", "layers", "most_redundant", "summary", "gate"))
    assert [e["exit_code"] for e in doc["checkpoints"][:3]] == [0, 0, 0]
    assert all(e["layers"] for e in doc["checkpoints"][:3])
    assert doc["summary"] == {"checkpoints": 4, "scored": 3, "errors": 1}
    assert f"Error: {broken['error']}" in result.stderr.splitlines()


def test_the_exit_code_is_the_highest_of_the_files(run_cli, runs, tmp_path):
    (runs / "epoch_04.pt").write_bytes(b"\x80 not a pickle")  # 3: unreadable
    result = run_cli("score", runs, "--fail-above", "0.5")  # epoch_03 fails the gate: 1
    assert result.exit_code == 3
    assert (
        "1 of 4 checkpoints failed the gate" in result.stderr
        and "1 of 4 could not be scored; exit code 3" in result.stderr
    )
    torch.save({"fc.weight": torch.randn(4, 8)}, runs / "epoch_05.pt")  # 4: no conv layers
    doc = run_json(run_cli, runs, "--fail-above", "0.5", code=4)
    assert [e["exit_code"] for e in doc["checkpoints"]] == [0, 0, 1, 3, 4]
    assert doc["gate"]["passed"] is False and doc["gate"]["failing_checkpoints"] == [str(runs / "epoch_03.pth")]
    torch.save(torch.nn.Conv2d(2, 4, 3), runs / "epoch_06.pt")  # 6: a pickled module, needs --trust
    assert run_cli("score", runs).exit_code == 6
    # --trust reads it; the highest code left is the no-conv file's
    assert run_cli("score", runs, "--trust").exit_code == 4


@pytest.mark.parametrize("arg", ["empty", "runs/*.ckpt"])
def test_a_folder_or_pattern_naming_no_file_is_an_unreadable_entry(run_cli, runs, tmp_path, arg):
    (tmp_path / "empty").mkdir()
    doc = run_json(run_cli, runs / "epoch_01.pt", tmp_path / arg, code=3)
    assert doc["checkpoints"][0]["exit_code"] == 0
    assert doc["checkpoints"][1]["exit_code"] == 3
    assert doc["checkpoints"][1]["checkpoint"] == str(tmp_path / arg)


def test_layer_globs_apply_to_every_file(run_cli, runs):
    doc = run_json(run_cli, runs / "epoch_01.pt", runs / "epoch_03.pth", "--exclude", "a", "--fail-above", "0.5")
    assert [[layer["name"] for layer in e["layers"]] for e in doc["checkpoints"]] == [["b"], ["b"]]
    # a file where the pattern names no layer is that file's usage error (2); the other is still scored
    doc = run_json(run_cli, runs / "epoch_01.pt", runs / "epoch_02.safetensors", "--layers", "b", code=2)
    assert [e["exit_code"] for e in doc["checkpoints"]] == [0, 2]
    assert doc["checkpoints"][1]["error"].startswith(str(runs / "epoch_02.safetensors"))


def test_the_table_has_a_section_per_file(run_cli, runs):
    result = run_cli("score", runs)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    headers = [line for line in lines if line.startswith(str(runs))]
    assert headers == [
        f"{runs / 'epoch_01.pt'} (torch-zip)",
        f"{runs / 'epoch_02.safetensors'} (safetensors)",
        f"{runs / 'epoch_03.pth'} (torch-zip)",
    ]
    assert result.stdout.count("Filter redundancy per conv layer") == 3
