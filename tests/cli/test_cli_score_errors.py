"""`orthocli score` errors through the real entry point: exit codes, one line, --debug."""

from __future__ import annotations

import json

import pytest
import torch
from score_helpers import assert_error, score_json, summary_of

from orthocli.method.orthogonality import orthogonality_scores

# --- errors through the CLI ------------------------------------------------------------------


def test_missing_file_exit_3(run_cli, tmp_path):
    path = tmp_path / "nope.pt"
    assert_error(run_cli("score", path), 3, str(path))


def test_damaged_file_exit_3(run_cli, save_ckpt, tiny_state_dict):
    path = save_ckpt(tiny_state_dict, "legacy")
    path.write_bytes(path.read_bytes()[:300])
    assert_error(run_cli("score", path), 3, str(path))


def test_no_conv_layers_exit_4(run_cli, save_ckpt):
    path = save_ckpt({"fc.weight": torch.randn(4, 8), "fc.bias": torch.randn(4)})
    assert_error(run_cli("score", path), 4, str(path), "no conv layers")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_exit_4(run_cli, save_ckpt, tiny_state_dict, bad):
    tiny_state_dict["conv2.weight"][3, 1, 0, 0] = bad
    assert_error(run_cli("score", save_ckpt(tiny_state_dict)), 4, "conv2", "NaN")
    # With --json the document still comes, the file's entry saying why it has no scores.
    result = run_cli("score", save_ckpt(tiny_state_dict), "--json")
    assert result.exit_code == 4
    entry = json.loads(result.stdout)["checkpoints"][0]
    assert entry["exit_code"] == 4 and "conv2" in entry["error"] and entry["layers"] is None
    assert summary_of(result.stderr)[0] == [f"Error: {entry['error']}"]


def test_ambiguous_wrapper_exit_4_then_key(run_cli, save_ckpt, tiny_state_dict):
    ema = {k: v * 0.5 for k, v in tiny_state_dict.items()}
    path = save_ckpt({"model": tiny_state_dict, "ema": ema})
    assert_error(run_cli("score", path), 4, "--key")
    doc = score_json(run_cli, path, "--key", "ema")
    want = orthogonality_scores(ema["conv1.weight"]).tolist()
    assert doc["layers"][0]["scores"] == pytest.approx(want, abs=1e-6)


def test_pickled_module_exit_6_then_trust(run_cli, save_ckpt, tiny_model):
    path = save_ckpt(tiny_model)
    assert_error(run_cli("score", path), 6, str(path), "--trust")
    doc = score_json(run_cli, path, "--trust")
    assert [(c["name"], c["groups"], c["layout_known"]) for c in doc["layers"]] == [
        ("conv1", 1, True),
        ("conv2", 2, True),
    ]
    want = orthogonality_scores(tiny_model.conv2.weight.detach(), groups=2).tolist()
    assert doc["layers"][1]["scores"] == pytest.approx(want, abs=1e-6)


def test_debug_prints_a_traceback_and_keeps_the_exit_code(run_cli, tmp_path):
    result = run_cli("--debug", "score", tmp_path / "nope.pt")
    assert result.exit_code == 3
    assert "Traceback" in result.stderr and "InputFileError" in result.stderr
    # --debug does not leak into the next invocation in the same process
    result = run_cli("score", tmp_path / "nope.pt")
    assert result.exit_code == 3 and "Traceback" not in result.stderr


def test_debug_from_the_environment(run_cli, tmp_path):
    result = run_cli("score", tmp_path / "nope.pt", env={"ORTHOCLI_DEBUG": "1"})
    assert result.exit_code == 3 and "Traceback" in result.stderr


def test_an_empty_conv_weight_is_a_clear_error(run_cli, tmp_path):
    torch.save({"c.weight": torch.zeros(0, 3, 3, 3), "d.weight": torch.randn(4, 3, 3, 3)}, tmp_path / "e.pt")
    result = run_cli("score", tmp_path / "e.pt")
    assert result.exit_code == 4 and "'c' has an empty weight" in result.stderr
    assert run_cli("score", tmp_path / "e.pt", "--exclude", "c").exit_code == 0
