"""`orthocli export --compact`: compaction equal to the masked sub-network on every built-in
architecture and a user one, and compact checkpoints that rebuild, score and retrain."""

from __future__ import annotations

import json

import pytest
import torch
from export_helpers import (
    CONVNET_DROPS,
    DW_ARCH,
    RESNET_ARCH,
    SIGRES_ARCH,
    USER_ARCH,
    convnet_arch,
    probe_for,
    prune,
    save_pruned,
    trained_like,
)
from torch import nn
from train_helpers import ONE_CYCLE

import orthocli.checkpoints.checkpoint as checkpoint
from orthocli.checkpoints.model import CheckpointModel, rebuild
from orthocli.method.masking import masked_model
from orthocli.network.banks import banks_from_model
from orthocli.network.compact import compacted, param_count
from orthocli.network.models import build_model

# the tests load TorchScript files themselves; torch 2.9+ marks torch.jit.load deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def convnet_params(widths: list[int], cin: int, kernel: int, bn: bool, spatial: int, classes: int) -> int:
    """Parameters of a ConvNet with these conv widths, counted from the layer shapes."""
    total, prev = 0, cin
    for w in widths:
        total += prev * w * kernel + w + (2 * w if bn else 0)
        prev = w
    return total + prev * spatial * classes + classes


CASES = {
    # name: (arch, drops, expected parameters removed)
    "convnet-bn": (
        convnet_arch(),
        CONVNET_DROPS,
        convnet_params([8, 8, 8], 1, 9, True, 1, 10) - convnet_params([6, 5, 7], 1, 9, True, 1, 10),
    ),
    "convnet-sigmoid-no-bn": (
        convnet_arch(activation="sigmoid", batchnorm=False),
        CONVNET_DROPS,
        convnet_params([8, 8, 8], 1, 9, False, 1, 10) - convnet_params([6, 5, 7], 1, 9, False, 1, 10),
    ),
    "convnet-conv1d": (  # 16 -> 8 -> 4 -> 2: each conv3 channel is a block of 2 classifier inputs
        convnet_arch(input_shape=[16]),
        {"features.conv2": [1], "features.conv3": [0, 4, 6]},
        convnet_params([8, 8, 8], 1, 3, True, 2, 10) - convnet_params([8, 7, 5], 1, 3, True, 2, 10),
    ),
    # inner conv1 of each block: d * (cin*9 [conv1] + 2 [bn1] + cout*9 [conv2 input]); see test below
    "resnet20": (RESNET_ARCH, "all-one", 1422),
    "user": (
        USER_ARCH,
        {"c1": [0, 2], "c2": [5]},
        # c1: 2*(9+1) + bn 2*2 + c2 inputs 2*6*9; c2: 1*(4*9+1) + fc block 36*4
        2 * 10 + 4 + 2 * 6 * 9 + (4 * 9 + 1) + 36 * 4,
    ),
}


def _drops_for(arch, drops):
    if drops == "all-one":
        return {b.name: [0] for b in banks_from_model(build_model(arch))}
    return drops


@pytest.mark.parametrize("case", list(CASES))
def test_compact_equals_masked_and_removes_exactly_the_dropped_parameters(case):
    arch, drops, removed = CASES[case]
    drops = _drops_for(arch, drops)
    model = trained_like(arch)
    prune(model, drops)
    dropped = {k: torch.tensor(v) for k, v in drops.items()}
    small, report = compacted(model, dropped)
    x = probe_for(arch)
    with torch.no_grad():
        assert (small.eval()(x) - masked_model(model, dropped)(x)).abs().max() <= 1e-5
    assert param_count(model) - param_count(small) == removed
    # the compact model rebuilds from the architecture plus its widths
    rebuilt = rebuild({**arch, "widths": report.widths})
    rebuilt.load_state_dict(small.state_dict(), strict=True)


def test_resnet20_compacts_inner_convs_and_keeps_residual_ones():
    drops = _drops_for(RESNET_ARCH, "all-one")
    model = trained_like(RESNET_ARCH)
    prune(model, drops)
    _, report = compacted(model, {k: torch.tensor(v) for k, v in drops.items()})
    inner = {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    assert set(report.layers) == inner
    assert set(report.kept_width) == {"conv1"} | {n.replace("conv1", "conv2") for n in inner}
    assert "residual add" in report.kept_width["layer1.0.conv2"]


def test_compact_refuses_a_kept_width_layer_that_leaks(run_cli, tmp_path):
    # c1 feeds a residual add (kept at full width) through sigmoid: sigmoid(0) != 0, which the
    # sub-network's mask silences and a compact model (no mask) cannot: refused, naming the layer
    src = save_pruned(tmp_path / "r.pt", SIGRES_ARCH, {"c1": [0], "c2": [1]})
    result = run_cli("export", src, "-o", tmp_path / "r.safetensors", "--compact", "--trust")  # its own code
    assert result.exit_code == 4
    assert (
        "layer 'c1' keeps its width and its dropped filters are silenced by a mask" in result.stderr
        and "meet another tensor at 'add'" in result.stderr
        and "export without --compact" in result.stderr
    )
    assert not (tmp_path / "r.safetensors").exists()


def test_compact_removes_a_channel_with_the_depthwise_filter_that_reads_it(cli_json, tmp_path):
    src = save_pruned(tmp_path / "dw.pt", DW_ARCH, {"c1": [1]})
    doc = cli_json("export", src, "-o", tmp_path / "dw.pt2", "--format", "pt", "--compact", "--trust")
    assert doc["compaction"]["layers"] == [{"name": "c1", "filters": 4, "kept": 3, "patterns": ["depthwise"]}]
    small = torch.load(tmp_path / "dw.pt2", weights_only=True)
    assert small["dw.weight"].shape == (3, 1, 3, 3) and small["fc.weight"].shape == (3, 3 * 6 * 6)
    assert doc["verified"]["max_abs_diff"] <= 1e-5


def test_compact_orthocli_checkpoint_rebuilds_scores_and_retrains(run_cli, cli_json, pruned, tmp_path):
    out = tmp_path / "small.pt"
    doc = cli_json("export", pruned, "-o", out, "--compact", "--format", "orthocli")
    assert set(doc) == {
        "checkpoint",
        "format",
        "output",
        "compact",
        "verified",
        "dropped_filters",
        "masked_max_abs_diff",
        "before",
        "after",
        "compaction",
    }
    assert doc["before"]["params"] - doc["after"]["params"] == CASES["convnet-bn"][2]
    assert doc["after"]["bytes"] == out.stat().st_size < doc["before"]["bytes"]
    assert doc["after"]["ms"] > 0 and doc["before"]["ms"] > 0
    ckpt = checkpoint.load(out)
    assert ckpt.extras["arch"]["widths"] == {"features.conv1": 6, "features.conv2": 5, "features.conv3": 7}
    assert "prune" not in ckpt.extras and ckpt.extras["data"]["mean"] == [0.5]
    scored = run_cli("score", out, "--json")
    assert scored.exit_code == 0, scored.stderr
    assert [layer["filters"] for layer in json.loads(scored.stdout)["checkpoints"][0]["layers"]] == [6, 5, 7]
    # retrain: the rebuilt compact model trains, and can be traced for the next prune
    model = CheckpointModel(ckpt).model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert [b.name for b in banks_from_model(model)] == ["features.conv1", "features.conv2", "features.conv3"]
    # and through `orthocli train`, RePr cycles included, keeping its compact widths
    res = run_cli(
        "train",
        out,
        *ONE_CYCLE,
        "--data",
        "digits",
        "--max-samples",
        "200",
        "--threads",
        "1",
        "-o",
        tmp_path / "retrained.pt",
        "--json",
    )
    assert res.exit_code == 0, res.stderr
    retrained = checkpoint.load(tmp_path / "retrained.pt")
    assert retrained.extras["arch"]["widths"] == {"features.conv1": 6, "features.conv2": 5, "features.conv3": 7}
    assert [layer.filters for layer in CheckpointModel(retrained).convs()] == [6, 5, 7]


def test_compact_safetensors_and_torchscript(run_cli, cli_json, pruned, tmp_path):
    cli_json("export", pruned, "-o", tmp_path / "small.safetensors", "--compact")
    scored = run_cli("score", tmp_path / "small.safetensors", "--json")
    assert scored.exit_code == 0
    assert [layer["filters"] for layer in json.loads(scored.stdout)["checkpoints"][0]["layers"]] == [6, 5, 7]
    doc = cli_json("export", pruned, "-o", tmp_path / "small.ts", "--compact")
    assert doc["after"]["params"] < doc["before"]["params"]
    assert doc["verified"]["max_abs_diff"] <= 1e-4


def test_user_architecture_through_the_cli(cli_json, tmp_path):
    src = save_pruned(tmp_path / "user.pt", USER_ARCH, {"c1": [0, 2], "c2": [5]})
    doc = cli_json("export", src, "-o", tmp_path / "user.safetensors", "--compact", "--trust")
    assert doc["before"]["params"] - doc["after"]["params"] == CASES["user"][2]
    assert {layer["name"]: layer["kept"] for layer in doc["compaction"]["layers"]} == {"c1": 4, "c2": 5}
