"""`orthocli score` through the real entry point: the JSON document, layer globs, the table."""

from __future__ import annotations

import json

import pytest
import torch
from score_helpers import assert_error, e1_filters, orthogonal_filters, score_json, summary_of

from orthocli import __version__
from orthocli.checkpoints.model import CheckpointModel
from orthocli.method.orthogonality import DEAD_SCORE, chance_score, orthogonality_scores

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
    "chance",
    "times_chance",
    "dead",
    "scores",
    "left_out_by_rule",
}


# --- the JSON document --------------------------------------------------------------------


def test_json_schema_and_scores(run_cli, save_ckpt, tiny_state_dict):
    path = save_ckpt(tiny_state_dict)
    result = run_cli("score", path, "--json")
    top = json.loads(result.stdout)
    assert top["orthocli_version"] == __version__
    assert top["schema_version"] == 2
    assert (top["exit_code"], top["gate"]) == (0, None)
    assert top["summary"] == {"checkpoints": 1, "scored": 1, "errors": 0}
    doc = score_json(run_cli, path)
    assert top["checkpoints"] == [doc]
    assert (doc["checkpoint"], doc["exit_code"], doc["error"]) == (str(path), 0, None)
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
        assert layer["chance"] == chance_score(weight[0].numel(), weight.shape[0])
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
    doc = score_json(run_cli, save_ckpt(net, "torchscript"), "--trust")
    assert doc["format"] == "torchscript"
    dw, up = doc["layers"]
    assert (dw["groups"], dw["transposed"], dw["layout_known"], dw["filters"]) == (4, False, True, 4)
    assert (up["groups"], up["transposed"], up["layout_known"], up["filters"]) == (2, True, True, 6)
    assert dw["scores"] == [0.0] * 4  # one filter per group: nothing to overlap with
    want = orthogonality_scores(net.up.weight.detach(), groups=2, transposed=True).tolist()
    assert up["scores"] == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("name", ["mtcnn_pnet.pt", "silero_vad.jit", "lpips_alex.pth"])
def test_real_checkpoints_score(run_cli, data_dir, name):
    import orthocli.checkpoints.checkpoint as checkpoint

    trust = ["--trust"] if name.endswith(".jit") else []  # TorchScript runs code: read only when trusted
    doc = score_json(run_cli, data_dir / name, *trust)
    layers = CheckpointModel(checkpoint.load(data_dir / name, trust=bool(trust))).convs()
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
        (["--exclude", "features.?"], ["head"]),
        # a pattern also matches what follows any dot of a name
        (["--exclude", "6", "-x", "3"], ["features.0", "head"]),
        (["-l", "0", "-l", "head"], ["features.0", "head"]),
        (["--layers", "features.[03]"], ["features.0", "features.3"]),
    ],
)
def test_layer_globs(run_cli, save_ckpt, args, expected):
    doc = score_json(run_cli, _four_layers(save_ckpt), *args)
    assert [layer["name"] for layer in doc["layers"]] == expected
    assert {e["layer"] for e in doc["most_redundant"]} <= set(expected)


@pytest.mark.parametrize("option", ["--layers", "--exclude"])
def test_a_pattern_matching_no_layer_is_a_usage_error(run_cli, save_ckpt, option):
    path = _four_layers(save_ckpt)
    line = assert_error(run_cli("score", path, option, "features.*", option, "conv*"), 2, f"{option} 'conv*'")
    assert str(path) in line
    assert "the layers are: features.0, features.3, features.6, head" in line  # lists the layers there are
    assert "dotted" not in line and "the part after any '.'" in line  # and says how a pattern matches
    # a dotted suffix only at a dot: 'ead' is not 'head'
    assert_error(run_cli("score", path, option, "ead"), 2, "'ead'")


def test_patterns_that_leave_no_layer_are_a_usage_error(run_cli, save_ckpt):
    path = _four_layers(save_ckpt)
    line = assert_error(run_cli("score", path, "--layers", "head", "--exclude", "head"), 2, "leave no conv layer")
    assert "features.0" in line


# --- human output -----------------------------------------------------------------------------


def test_table_output(run_cli, save_ckpt, tiny_state_dict):
    result = run_cli("score", save_ckpt(tiny_state_dict))
    assert result.exit_code == 0, result.stderr
    assert summary_of(result.stderr)[0] == []  # nothing on stderr but the summary line
    assert "conv1" in result.stdout and "conv2" in result.stdout
    assert "fc" not in result.stdout.split()


def test_the_table_reads_each_layer_against_random_filters_and_notes_go_under_it(run_cli, data_dir):
    """A real model (MTCNN O-Net): its first layer (32 filters of 27 weights) is overcomplete."""
    result = run_cli("score", data_dir / "mtcnn_onet.pt", "--top", "0")
    assert result.exit_code == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "layer" in line and "mean" in line)
    assert [c.strip() for c in header.split("┃")[1:-1]] == [
        "layer",
        "shape",
        "filters",
        "mean",
        "random",
        "× chance",
        "max",
    ]
    conv2 = next(line for line in result.stdout.splitlines() if line.startswith("│ conv2 "))
    assert f"{chance_score(32 * 9, 64):.4f}" in conv2  # 64 filters of 32x3x3
    assert result.stdout.rstrip().splitlines()[-1] == (
        "conv1: more filters than dimensions: they cannot all be orthogonal; the drop rule leaves the first conv"
        " layer alone (--skip-first, the default): not in the list of filters"
    )
