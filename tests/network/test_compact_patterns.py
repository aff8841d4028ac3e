"""`export --compact` through concatenation, spatial reductions and depthwise convs, checked
against the masked sub-network and against Torch-Pruning given the same dropped indices."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orthocli.checkpoints.model import CheckpointModel
from orthocli.errors import CheckpointError
from orthocli.method.masking import masked_model
from orthocli.method.subnet import apply_drops, make_record
from orthocli.network.banks import banks_from_model
from orthocli.network.compact import compacted, param_count
from orthocli.network.models import build_model

REDUCTIONS = {
    "mean": lambda x: x.mean((2, 3)),
    "sum": lambda x: x.sum(dim=(-1, -2)),
    "amax": lambda x: torch.amax(x, dim=(2, 3)),
    "mean_keepdim_flatten": lambda x: torch.flatten(x.mean((2, 3), keepdim=True), 1),
    "adaptive_pool": lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1),
}


class CatNet(nn.Module):
    """Two convs concatenated, then a conv and a spatial reduction into a Linear."""

    def __init__(self, reduce: str = "mean") -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(6)
        self.c = nn.Conv2d(10, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)
        self.reduce = REDUCTIONS[reduce]

    def forward(self, x):
        y = torch.cat([torch.relu(self.bn_a(self.a(x))), torch.relu(self.b(x))], dim=1)
        return self.fc(self.reduce(torch.relu(self.c(y))))


class DepthwiseNet(nn.Module):
    """MobileNet's pattern: expand (1x1) -> BN -> ReLU6 -> depthwise -> BN -> ReLU6 -> project."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.expand, self.bn1 = nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm2d(8)
        self.dw, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.project, self.bn3 = nn.Conv2d(8, 6, 1, bias=False), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = F.relu6(self.bn1(self.expand(x)))
        x = F.relu6(self.bn2(self.dw(x)))
        return self.fc(torch.relu(self.bn3(self.project(x))).mean((2, 3)))


def _trained_like(model: nn.Module, example: torch.Tensor, seed: int = 0) -> nn.Module:
    """Non-trivial biases and BatchNorm statistics, so a leak through a dropped filter shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.3, 0.3)
        model.train()
        for _ in range(2):
            model(example * 2 + 0.5)
    return model.eval()


def _pruned(model: nn.Module, drops: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Zero the dropped filters as `orthocli prune` does; the drops as tensors."""
    dropped = {k: torch.tensor(v) for k, v in drops.items()}
    state = model.state_dict()
    apply_drops(state, make_record(state, banks_from_model(model), dropped, {"ratio": 0.3}))
    return dropped


def _torch_pruning(model: nn.Module, example: torch.Tensor, drops: dict[str, torch.Tensor]) -> nn.Module:
    """Torch-Pruning's model for the same indices: each layer's group pruned with its low-level API."""
    tp = pytest.importorskip("torch_pruning")
    model = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    for name, idx in drops.items():  # one graph: it keeps its index mappings up to date as groups are pruned
        group = graph.get_pruning_group(model.get_submodule(name), tp.prune_conv_out_channels, idxs=idx.tolist())
        assert graph.check_pruning_group(group)
        group.prune()
    return model.eval()


def _check(model: nn.Module, example: torch.Tensor, drops: dict[str, list[int]]) -> tuple[nn.Module, object]:
    """Compact `model` with orthocli and with Torch-Pruning; both must equal the masked model."""
    dropped = _pruned(model, drops)
    masked = masked_model(model, dropped)
    small, report = compacted(model, dropped, example)
    theirs = _torch_pruning(model, example, dropped)
    with torch.no_grad():
        want = masked(example)
        assert (small.eval()(example) - want).abs().max() <= 1e-5
        assert (theirs(example) - want).abs().max() <= 1e-5  # where Torch-Pruning is right
    assert param_count(small) <= param_count(theirs) < param_count(model)
    return small, report


@pytest.mark.parametrize("reduce", list(REDUCTIONS))
def test_concatenation_and_spatial_reductions_compact_like_torch_pruning(reduce):
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    model = _trained_like(CatNet(reduce), x)
    small, report = _check(model, x, {"a": [1, 4], "b": [2], "c": [0, 3]})
    assert report.kept_width == {}
    assert small.c.weight.shape == (3, 7, 3, 3) and small.fc.weight.shape == (3, 3)
    assert report.layers["a"]["patterns"] == ["concatenation"] and report.layers["b"]["patterns"] == ["concatenation"]
    assert report.layers["c"]["patterns"] == ([] if reduce == "adaptive_pool" else ["spatial reduction"])


def test_a_depthwise_conv_loses_the_filter_of_a_dropped_channel_like_torch_pruning():
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    model = _trained_like(DepthwiseNet(), x)
    small, report = _check(model, x, {"expand": [1, 5], "project": [2]})
    assert report.layers["expand"] == {"filters": 8, "kept": 6, "patterns": ["depthwise"]}
    assert small.dw.weight.shape == (6, 1, 3, 3) and small.dw.groups == 6 and small.bn2.num_features == 6
    assert small.project.weight.shape == (5, 6, 1, 1)


@pytest.mark.parametrize(
    "arch, drops",
    [
        ({"name": "convnet", "args": {"batchnorm": True}}, {"features.conv2": [0, 5], "features.conv3": [1, 2, 7]}),
        ({"name": "convnet", "args": {"batchnorm": False}}, {"features.conv1": [3], "features.conv2": [0, 5]}),
        ({"name": "convnet", "args": {"input_shape": [16], "batchnorm": True}}, {"features.conv2": [1, 6]}),
        (
            {"name": "resnet20", "args": {"width": 4}},
            {"layer1.0.conv1": [1], "layer2.1.conv1": [0, 5], "layer3.2.conv1": [3]},
        ),
    ],
    ids=["convnet-bn", "convnet", "convnet-1d", "resnet20-inner"],
)
def test_builtin_models_compact_like_torch_pruning(arch, drops):
    args = {"in_channels": 1, "num_classes": 4, "input_shape": [8, 8], "width": 8, **arch["args"]}
    model = build_model({"name": arch["name"], "args": args})
    x = torch.randn(4, 1, *args["input_shape"], generator=torch.Generator().manual_seed(3))
    _, report = _check(_trained_like(model, x), x, drops)
    assert set(report.layers) == set(drops) and report.kept_width == {}


def test_where_torch_pruning_is_wrong_orthocli_keeps_width_or_refuses():
    # ResNet-20's shortcut pads channels with zeros: a block's second conv meets it in an add
    model = build_model({"name": "resnet20", "args": {"in_channels": 1, "num_classes": 4, "input_shape": [8, 8]}})
    x = torch.randn(2, 1, 8, 8)
    dropped = _pruned(model, {"layer1.0.conv2": [0]})
    _, report = compacted(model, dropped, x)
    assert report.layers == {} and "residual add" in report.kept_width["layer1.0.conv2"]
    # a grouped conv: some filters of one group only would leave the groups uneven; it keeps its
    # width, and so does a layer it reads (its input channels would change its groups), both exact
    grouped = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    x = torch.randn(2, 3, 6, 6)
    grouped(x)
    for layer, reason in (("2", "a grouped conv (groups=2)"), ("0", "the grouped conv '2'")):
        dropped = _pruned(grouped, {layer: [0, 1]})
        small, report = compacted(grouped, dropped, x)
        assert report.layers == {} and reason in report.kept_width[layer] and "--exclude" in report.kept_width[layer]
        with torch.no_grad():
            assert (small(x) - masked_model(grouped, dropped)(x)).abs().max() <= 1e-6


class SharedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.block(torch.relu(self.block(torch.relu(self.stem(x))))))
        return self.fc(x.mean((2, 3)))


def test_a_shared_conv_is_refused_by_compaction_and_masked_at_every_call():
    model, x = SharedNet().eval(), torch.randn(2, 3, 6, 6)
    dropped = {"block": torch.tensor([1])}
    with pytest.raises(CheckpointError, match="called 2 times"):
        compacted(model, dropped, x)
    masked = masked_model(model, dropped)
    seen = []
    model.block.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        masked(x)
    # the second call reads the first call's output: its dropped channel must be 0 there too
    assert len(seen) == 2 and seen[1][:, 1].abs().max() == 0


def test_a_concatenation_without_an_example_input_keeps_width():
    model = CatNet().eval()
    _, report = compacted(model, {"a": torch.tensor([0])})
    assert "--input-shape" in report.kept_width["a"]


def make_cat_net(**_) -> nn.Module:
    return CatNet()


def make_depthwise_net(**_) -> nn.Module:
    return DepthwiseNet()


@pytest.mark.parametrize(
    "target, drops, patterns",
    [
        ("make_cat_net", {"a": [1, 4], "b": [2], "c": [0, 3]}, {"concatenation", "spatial reduction"}),
        ("make_depthwise_net", {"expand": [1, 5], "project": [2]}, {"depthwise", "spatial reduction"}),
    ],
)
def test_export_compact_reports_the_saving_of_each_pattern(run_cli, tmp_path, target, drops, patterns):
    import orthocli.checkpoints.checkpoint as checkpoint

    arch = {
        "name": "callable",
        "target": f"test_compact_patterns:{target}",
        "args": {"in_channels": 3, "num_classes": 3, "input_shape": [6, 6]},
    }
    model = _trained_like(build_model(arch), torch.randn(4, 3, 6, 6))
    state = model.state_dict()
    record = make_record(state, banks_from_model(model), {k: torch.tensor(v) for k, v in drops.items()}, {"ratio": 0.3})
    apply_drops(state, record)
    checkpoint.save(tmp_path / "p.pt", checkpoint.make_payload(state, arch=arch, prune=record))
    res = run_cli(
        "export",
        tmp_path / "p.pt",
        "-o",
        tmp_path / "small.pt",
        "--format",
        "orthocli",
        "--compact",
        "--json",
        "--trust",
    )  # the file records its own architecture's code: --trust
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    saved = {p["pattern"]: p for p in doc["compaction"]["patterns"]}
    assert set(saved) == patterns
    for p in saved.values():  # each pattern's layers compacted alone, counted independently here
        alone, _ = compacted(model, {n: torch.tensor(drops[n]) for n in p["layers"]}, torch.randn(1, 3, 6, 6))
        assert p["params_saved"] == param_count(model) - param_count(alone) > 0
        assert isinstance(p["ms_saved"], float)
    assert doc["after"]["params"] < doc["before"]["params"] and doc["verified"]["max_abs_diff"] <= 1e-5
    small = CheckpointModel(checkpoint.load(tmp_path / "small.pt"), trust=True).model  # rebuilt from the widths
    assert param_count(small) == doc["after"]["params"]
    table = run_cli(
        "export", tmp_path / "p.pt", "-o", tmp_path / "t.pt", "--format", "orthocli", "--compact", "--trust"
    )
    assert table.exit_code == 0 and "Saving by pattern" in table.stdout and sorted(patterns)[0] in table.stdout


def test_a_dropped_channel_takes_its_depthwise_filter_out_of_the_sub_network_and_back():
    from orthocli.method.subnet import reintroduce

    x = torch.randn(4, 3, 6, 6)
    model = _trained_like(DepthwiseNet(), x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = model.state_dict()
    record = make_record(state, banks_from_model(model), {"expand": torch.tensor([1, 5])}, {"ratio": 0.3})
    assert record["layers"]["expand"]["follow"] == ["dw"]
    apply_drops(state, record)
    for key in ("dw.weight", "bn2.weight", "bn2.bias"):  # zeroed while dropped: the channel is dead
        assert state[key][[1, 5]].abs().max() == 0 and torch.equal(state[key][[0, 2]], before[key][[0, 2]])
    reintroduce(state, record, torch.Generator().manual_seed(0), 1.0, "keep")
    for key in ("dw.weight", "bn2.weight", "bn2.bias", "bn2.running_mean"):  # back as they were
        assert torch.equal(state[key], before[key])
    assert not torch.equal(state["expand.weight"][[1, 5]], before["expand.weight"][[1, 5]])  # from the null space


MOBILE = """
import torch
import torch.nn.functional as F
from torch import nn


class Mobile(nn.Module):
    def __init__(self, in_channels, num_classes, width):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.expand, self.bn1 = nn.Conv2d(width, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width)
        self.dw, self.bn2 = nn.Conv2d(2 * width, 2 * width, 3, padding=1, groups=2 * width), nn.BatchNorm2d(2 * width)
        self.a, self.b = nn.Conv2d(2 * width, width, 1), nn.Conv2d(2 * width, width, 3, padding=1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = F.relu6(self.bn1(self.expand(torch.relu(self.stem(x)))))
        x = F.relu6(self.bn2(self.dw(x)))
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
        return self.fc(y.mean((2, 3)))


def mobile(in_channels, num_classes, input_shape, width=6):
    return Mobile(in_channels, num_classes, width)
"""


def test_train_prune_and_compact_a_model_with_every_pattern(run_cli, tmp_path, monkeypatch):
    (tmp_path / "mobile_models.py").write_text(MOBILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    tiny = ["--data", "digits", "--max-samples", "120", "--s1", "1", "--s2", "1", "--cycles", "1", "--batch-size", "32"]
    res = run_cli("train", *tiny, "--arch", "mobile_models:mobile", "-o", tmp_path / "m.pt", "--json")
    assert res.exit_code == 0, res.stderr
    assert set(json.loads(res.stdout)["cycles"][0]["dropped"]) <= {"expand", "a", "b"}  # dw: depthwise
    # the checkpoints record the user's architecture (code): building them needs --trust
    res = run_cli(
        "prune", tmp_path / "m.pt", "-o", tmp_path / "p.pt", "--scope", "layer", "--ratio", "0.4", "--json", "--trust"
    )
    assert res.exit_code == 0, res.stderr
    assert {layer["name"] for layer in json.loads(res.stdout)["layers"]} == {"expand", "a", "b"}
    res = run_cli(
        "export", tmp_path / "p.pt", "-o", tmp_path / "s.pt", "--format", "orthocli", "--compact", "--json", "--trust"
    )
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["compaction"]["kept_width"] == [] and doc["after"]["params"] < doc["before"]["params"]
    assert {p["pattern"] for p in doc["compaction"]["patterns"]} == {"depthwise", "concatenation", "spatial reduction"}


def test_a_layer_kept_at_full_width_says_what_stopped_it_and_what_to_do():
    class Transposed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            y = torch.relu(self.b(torch.roll(torch.relu(self.a(x)), 1, 1)))  # channels moved: not followed
            return self.fc(y.mean((2, 3)))

    model, x = Transposed().eval(), torch.randn(2, 3, 8, 8)
    dropped = _pruned(model, {"a": [1], "b": [2]})
    small, report = compacted(model, dropped, x)
    assert set(report.layers) == {"b"} and "roll" in report.kept_width["a"]
    assert "--exclude" in report.kept_width["a"] and "docs/compaction.md" in report.kept_width["a"]
    assert (small(x) - masked_model(model, dropped)(x)).abs().max() <= 1e-5
