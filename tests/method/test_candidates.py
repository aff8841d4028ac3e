"""Which conv layers may lose filters: output layers, shared and depthwise convs never do, in
`prune`, `train` and `drops.plan_drops`."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from orthocli.config import ReprConfig
from orthocli.method.drops import plan_drops
from orthocli.network.graph import ModelGraph
from orthocli.network.layers import convs_from_module

FCN = """
import torch
from torch import nn


class FCN(nn.Module):
    def __init__(self, in_channels, num_classes, width):
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.c2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.head(x).mean((2, 3))


def fcn(in_channels, num_classes, input_shape, width=6):
    return FCN(in_channels, num_classes, width)
"""

TINY = [
    "--data",
    "digits",
    "--max-samples",
    "120",
    "--width",
    "6",
    "--s1",
    "1",
    "--s2",
    "1",
    "--cycles",
    "2",
    "--batch-size",
    "32",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_train_never_drops_the_class_channels_of_a_fully_convolutional_head(run_cli, tmp_path, monkeypatch, scope):
    (tmp_path / "fcn_models.py").write_text(FCN)
    monkeypatch.syspath_prepend(str(tmp_path))
    res = run_cli(
        "train",
        *TINY,
        "--arch",
        "fcn_models:fcn",
        "--scope",
        scope,
        "--ratio",
        "0.5",
        "-o",
        tmp_path / "f.pt",
        "--json",
    )
    assert res.exit_code == 0, res.stderr
    cycles = json.loads(res.stdout)["cycles"]
    assert len(cycles) == 2
    for cycle in cycles:
        assert set(cycle["dropped"]) == {"c2"}  # c1: --skip-first; head: its channels are the class scores


def test_prune_leaves_the_two_heads_of_a_bare_pnet_state_dict_alone(run_cli, tmp_path, data_dir):
    pnet = shutil.copy(data_dir / "mtcnn_pnet.pt", tmp_path / "pnet.pt")
    res = run_cli("prune", pnet, "-o", tmp_path / "p.pt", "--ratio", "0.4", "--json")
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    assert [layer["name"] for layer in plan["layers"]] == ["conv2", "conv3"]
    reasons = {layer["name"]: layer["reason"] for layer in plan["left_out"]}
    assert set(reasons) == {"conv1", "conv4_1", "conv4_2"}
    assert (
        "--skip-first" in reasons["conv1"]
        and "--skip-last" in reasons["conv4_2"]
        and "--skip-last" in reasons["conv4_1"]
    )
    original, pruned = torch.load(pnet, weights_only=True), torch.load(tmp_path / "p.pt", weights_only=True)
    for head in ("conv4_1", "conv4_2"):  # face score and box regression: every output channel intact
        assert torch.equal(pruned["state_dict"][f"{head}.weight"], original[f"{head}.weight"])
    # --no-skip-last: the user says the last layers are not outputs
    res = run_cli("prune", pnet, "--dry-run", "--ratio", "0.4", "--no-skip-last", "--json")
    assert {layer["name"] for layer in json.loads(res.stdout)["layers"]} == {"conv2", "conv3", "conv4_1", "conv4_2"}


def test_prune_table_says_why_a_layer_is_left_out(run_cli, tmp_path, data_dir):
    res = run_cli("prune", data_dir / "mtcnn_pnet.pt", "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert "conv4_2" in res.stdout and "--skip-last" in res.stdout and "--skip-first" in res.stdout


class Shared(nn.Module):
    """`block` is called twice (shared weights); `dw` is depthwise; `head` feeds the output."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Conv2d(8, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.mid = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.block(torch.relu(self.block(x))))
        x = torch.relu(self.mid(torch.relu(self.dw(x))))
        return torch.amax(self.head(x), dim=(2, 3))


def test_shared_depthwise_and_output_convs_are_never_candidates():
    model = Shared()
    fixed = ModelGraph.trace(model).fixed_layers()
    assert set(fixed) == {"block", "head"}
    assert "called 2 times" in fixed["block"] and "outputs" in fixed["head"]
    plan = plan_drops(convs_from_module(model), ReprConfig(ratio=0.5, scope="global", skip_first=False), fixed=fixed)
    assert [c.layer.name for c in plan.candidates] == ["stem", "mid"]
    reasons = dict(plan.reasons)
    assert "depthwise" in reasons["dw"] and reasons["block"] == fixed["block"]


def test_a_conv_that_feeds_a_linear_is_a_candidate_and_one_beside_the_output_is_not():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 2, 1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            y = torch.relu(self.b(torch.relu(self.a(x))))
            return self.fc(y.mean((2, 3))), torch.sigmoid(self.c(y)).flatten(1)

    assert set(ModelGraph.trace(TwoHeads()).fixed_layers()) == {"c"}
