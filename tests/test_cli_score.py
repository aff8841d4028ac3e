"""`orthocli score` through the real entry point: JSON, globs, the gate, errors, startup."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orthocli import __version__
from orthocli.layers import checkpoint_convs
from orthocli.orthogonality import DEAD_SCORE, orthogonality_scores

LAYER_KEYS = {
    "name",
    "key",
    "shape",
    "filters",
    "groups",
    "transposed",
    "layout_known",
    "overcomplete",
    "mean",
    "max",
    "dead",
    "scores",
}


def score_json(run_cli, *args) -> dict:
    result = run_cli("score", *args, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)  # exactly one JSON document


def assert_error(result, code: int, *fragments: str) -> str:
    """Exit `code`, nothing on stdout, one `Error: ...` line on stderr, no traceback."""
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
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


# --- the JSON document --------------------------------------------------------------------


def test_json_schema_and_scores(run_cli, save_ckpt, tiny_state_dict):
    path = save_ckpt(tiny_state_dict)
    doc = score_json(run_cli, path)
    assert doc["orthocli_version"] == __version__
    assert doc["schema_version"] == 1
    assert doc["checkpoint"] == str(path)
    assert doc["format"] == "torch-zip"
    assert doc["gate"] is None
    assert [layer["name"] for layer in doc["layers"]] == ["conv1", "conv2"]
    all_scores = []
    for layer in doc["layers"]:
        assert set(layer) == LAYER_KEYS
        weight = tiny_state_dict[layer["key"]]
        assert layer["key"] == layer["name"] + ".weight"
        assert layer["shape"] == list(weight.shape)
        assert layer["filters"] == weight.shape[0] == len(layer["scores"])
        assert (layer["groups"], layer["transposed"], layer["layout_known"]) == (1, False, False)
        assert layer["overcomplete"] is False
        want = orthogonality_scores(weight).tolist()
        assert layer["scores"] == pytest.approx(want, abs=1e-6)
        assert layer["mean"] == pytest.approx(sum(want) / len(want), abs=1e-6)
        assert layer["max"] == pytest.approx(max(want), abs=1e-6)
        assert layer["dead"] == []
        all_scores += layer["scores"]
    summary = doc["summary"]
    assert summary["layers"] == 2
    assert summary["filters"] == len(all_scores) == 8 + 16
    assert summary["dead"] == 0
    assert summary["mean"] == pytest.approx(sum(all_scores) / len(all_scores))
    assert summary["max"] == max(all_scores)


def test_most_redundant_and_top(run_cli, save_ckpt, tiny_state_dict):
    path = save_ckpt(tiny_state_dict)
    doc = score_json(run_cli, path)
    by_layer = {layer["name"]: layer["scores"] for layer in doc["layers"]}
    flat = sorted(((s, n, f) for n, ss in by_layer.items() for f, s in enumerate(ss)), key=lambda t: -t[0])
    assert len(doc["most_redundant"]) == 10  # the default
    for entry in doc["most_redundant"]:
        assert set(entry) == {"layer", "filter", "score"}
        assert entry["score"] == by_layer[entry["layer"]][entry["filter"]]
    assert [e["score"] for e in doc["most_redundant"]] == [s for s, _, _ in flat[:10]]
    assert len(score_json(run_cli, path, "--top", "3")["most_redundant"]) == 3
    assert score_json(run_cli, path, "-k", "0")["most_redundant"] == []
    assert len(score_json(run_cli, path, "--top", "1000")["most_redundant"]) == 24


def test_known_values_dead_and_identical_filters(run_cli, save_ckpt):
    same = e1_filters(4)
    with_dead = orthogonal_filters(3)
    with_dead[1] = 0
    doc = score_json(run_cli, save_ckpt({"same.weight": same, "gap.weight": with_dead}))
    same_l, gap_l = doc["layers"]
    assert same_l["scores"] == pytest.approx([3 / 4] * 4)
    assert gap_l["scores"] == pytest.approx([0.0, DEAD_SCORE, 0.0])
    assert gap_l["dead"] == [1]
    assert doc["summary"]["dead"] == 1
    # The dead filter ranks first, then the identical ones, ties in layer then filter order.
    assert [(e["layer"], e["filter"]) for e in doc["most_redundant"][:5]] == [
        ("gap", 1),
        ("same", 0),
        ("same", 1),
        ("same", 2),
        ("same", 3),
    ]


def test_overcomplete_flag(run_cli, save_ckpt):
    doc = score_json(run_cli, save_ckpt({"stem.weight": torch.randn(8, 1, 3), "body.weight": torch.randn(3, 2, 3)}))
    flags = {layer["name"]: layer["overcomplete"] for layer in doc["layers"]}
    assert flags == {"stem": 8 > 1 * 3, "body": 3 > 2 * 3}
    assert min(doc["layers"][0]["scores"]) > 0  # 8 directions in 3 dimensions overlap


def test_torchscript_layout_reaches_the_scores(run_cli, save_ckpt):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = torch.nn.Conv2d(4, 4, 3, groups=4)
            self.up = torch.nn.ConvTranspose2d(4, 6, 2, groups=2)

        def forward(self, x):
            return self.up(self.dw(x))

    torch.manual_seed(0)
    net = Net()
    doc = score_json(run_cli, save_ckpt(net, "torchscript"))
    assert doc["format"] == "torchscript"
    dw, up = doc["layers"]
    assert (dw["groups"], dw["transposed"], dw["layout_known"], dw["filters"]) == (4, False, True, 4)
    assert (up["groups"], up["transposed"], up["layout_known"], up["filters"]) == (2, True, True, 6)
    assert dw["scores"] == [0.0] * 4  # one filter per group: nothing to overlap with
    want = orthogonality_scores(net.up.weight.detach(), groups=2, transposed=True).tolist()
    assert up["scores"] == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("name", ["mtcnn_pnet.pt", "silero_vad.jit", "lpips_alex.pth"])
def test_real_checkpoints_score(run_cli, data_dir, name):
    from orthocli import checkpoint

    doc = score_json(run_cli, data_dir / name)
    layers = checkpoint_convs(checkpoint.load(data_dir / name))
    assert [layer["name"] for layer in doc["layers"]] == [c.name for c in layers]
    for got, layer in zip(doc["layers"], layers):
        assert got["scores"] == pytest.approx(orthogonality_scores(layer.weight).tolist(), abs=1e-6)
        assert all(0 <= s <= 1 for s in got["scores"])


# --- choosing layers ------------------------------------------------------------------------


def _four_layers(save_ckpt):
    sd = {f"{n}.weight": torch.randn(4, 2, 3) for n in ["features.0", "features.3", "features.6", "head"]}
    return save_ckpt(sd)


@pytest.mark.parametrize(
    "args,expected",
    [
        ([], ["features.0", "features.3", "features.6", "head"]),
        (["--layers", "features.*"], ["features.0", "features.3", "features.6"]),
        (["--layers", "features.*", "--exclude", "features.0"], ["features.3", "features.6"]),
        (["-l", "head", "-l", "*.6"], ["features.6", "head"]),
        (["--exclude", "features.?", "-x", "nothing"], ["head"]),
    ],
)
def test_layer_globs(run_cli, save_ckpt, args, expected):
    doc = score_json(run_cli, _four_layers(save_ckpt), *args)
    assert [layer["name"] for layer in doc["layers"]] == expected
    assert {e["layer"] for e in doc["most_redundant"]} <= set(expected)


def test_glob_matching_nothing(run_cli, save_ckpt):
    line = assert_error(run_cli("score", _four_layers(save_ckpt), "--layers", "conv*"), 4, "--layers")
    assert "features.0" in line  # lists the layers there are


# --- the CI gate -----------------------------------------------------------------------------


@pytest.fixture
def gate_ckpt(save_ckpt):
    # "redundant": 4 identical filters, mean exactly 3/4; "clean": orthogonal, mean 0.
    return save_ckpt({"redundant.weight": e1_filters(4), "clean.weight": orthogonal_filters(4)})


def test_gate_fails_above_bound(run_cli, gate_ckpt):
    result = run_cli("score", gate_ckpt, "--fail-above", "0.5", "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["gate"] == {"fail_above": 0.5, "passed": False, "failing_layers": ["redundant"]}
    assert "redundant" in result.stderr and "clean" not in result.stderr


@pytest.mark.parametrize("bound", ["0.8", "0.75", "1"])
def test_gate_passes_at_or_below_bound(run_cli, gate_ckpt, bound):
    result = run_cli("score", gate_ckpt, "--fail-above", bound, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["gate"] == {"fail_above": float(bound), "passed": True, "failing_layers": []}


def test_gate_only_counts_scored_layers(run_cli, gate_ckpt):
    assert run_cli("score", gate_ckpt, "--fail-above", "0", "--exclude", "redundant", "--json").exit_code == 0
    assert run_cli("score", gate_ckpt, "--fail-above", "0").exit_code == 1  # human output too


@pytest.mark.parametrize("args", [["--fail-above", "2"], ["--fail-above", "-0.1"], ["--top", "-1"], ["--top", "x"]])
def test_bad_option_values_are_usage_errors(run_cli, gate_ckpt, args):
    result = run_cli("score", gate_ckpt, *args)
    assert result.exit_code == 2
    assert args[0] in result.stderr
    assert result.stdout == ""


# --- human output -----------------------------------------------------------------------------


def test_table_output(run_cli, save_ckpt, tiny_state_dict):
    result = run_cli("score", save_ckpt(tiny_state_dict))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert "conv1" in result.stdout and "conv2" in result.stdout
    assert "fc" not in result.stdout.split()


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
    assert_error(run_cli("score", save_ckpt(tiny_state_dict), "--json"), 4, "conv2", "NaN")


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


# --- the app as a program ---------------------------------------------------------------------


def test_help_lists_commands(run_cli):
    result = run_cli("--help")
    assert result.exit_code == 0
    for name in ("score", "prune", "reinit", "train", "export"):
        assert name in result.stdout
    score_help = run_cli("score", "--help")
    assert score_help.exit_code == 0
    for flag in ("--layers", "--exclude", "--top", "--fail-above", "--key", "--trust", "--json"):
        assert flag in score_help.stdout


def test_version(run_cli):
    result = run_cli("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"orthocli {__version__}"


def _run(*args, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("ORTHOCLI_DEBUG", None)
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, **kw)


def test_help_does_not_import_torch():
    proc = _run(sys.executable, "-X", "importtime", "-m", "orthocli", "--help")
    assert proc.returncode == 0, proc.stderr
    # "import time: self | cumulative | name", the name indented by nesting depth: a torch
    # imported by some orthocli module shows as "|     torch", not only as "| torch".
    modules = [line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "typer" in modules  # the report is there
    heavy = [m for m in modules if m.split(".")[0] in ("torch", "numpy")]
    assert heavy == []


def test_debug_shows_a_traceback(tmp_path):
    proc = _run(sys.executable, "-m", "orthocli", "--debug", "score", str(tmp_path / "nope.pt"))
    assert proc.returncode == 3
    assert "Traceback" in proc.stderr and "InputFileError" in proc.stderr
    proc = _run(sys.executable, "-m", "orthocli", "score", str(tmp_path / "nope.pt"))
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"Error: {tmp_path / 'nope.pt'}: no such file"


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "orthocli"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orthocli"]


def test_console_script(data_dir):
    proc = _run(*_console_script(), "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"orthocli {__version__}"
    proc = _run(*_console_script(), "score", str(data_dir / "mtcnn_pnet.pt"), "--json", "--fail-above", "1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [layer["name"] for layer in doc["layers"]] == ["conv1", "conv2", "conv3", "conv4_1", "conv4_2"]
    assert doc["gate"]["passed"] is True
    assert all(math.isfinite(s) for layer in doc["layers"] for s in layer["scores"])
