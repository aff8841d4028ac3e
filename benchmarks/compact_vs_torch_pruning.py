"""`export --compact` against Torch-Pruning, given the same dropped filter indices.

For each model: parameters of the full model, of orthocli's compact model and of Torch-Pruning's
(its low-level API: one pruning group per dropped layer), and each one's max abs difference to
the masked sub-network (what `orthocli train` trained and `export` without --compact writes).
Prints a Markdown table with the command and versions.

    pip install torch-pruning   # the `test` extra has it
    python benchmarks/compact_vs_torch_pruning.py
"""

from __future__ import annotations

import copy
import platform
import sys

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from orthocli.errors import CheckpointError
from orthocli.method.masking import masked_model
from orthocli.method.subnet import apply_drops, make_record
from orthocli.network.banks import banks_from_model
from orthocli.network.compact import compacted, param_count
from orthocli.network.models import build_model


class CatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 3, padding=1)
        self.bn_a = nn.BatchNorm2d(16)
        self.c = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        y = torch.cat([torch.relu(self.bn_a(self.a(x))), torch.relu(self.b(x))], dim=1)
        return self.fc(torch.relu(self.c(y)).mean((2, 3)))


class DepthwiseNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.expand, self.bn1 = nn.Conv2d(16, 64, 1, bias=False), nn.BatchNorm2d(64)
        self.dw, self.bn2 = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), nn.BatchNorm2d(64)
        self.project, self.bn3 = nn.Conv2d(64, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = F.relu6(self.bn1(self.expand(x)))
        x = F.relu6(self.bn2(self.dw(x)))
        return self.fc(torch.relu(self.bn3(self.project(x))).mean((2, 3)))


class GroupedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.g = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.g(torch.relu(self.a(x)))).mean((2, 3)))


def _arch(name: str, **args) -> nn.Module:
    base = {"in_channels": 3, "num_classes": 10, "input_shape": [16, 16], "width": 16}
    return build_model({"name": name, "args": {**base, **args}})


def _every_third(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    return {n: torch.arange(0, model.get_submodule(n).out_channels, 3) for n in names}


def cases():
    convnet = ["features.conv2", "features.conv3"]
    inner = [f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)]
    yield "ConvNet + BN", _arch("convnet", batchnorm=True), convnet, [16, 16], True
    yield "ConvNet", _arch("convnet"), convnet, [16, 16], True
    yield "ConvNet (Conv1d) + BN", _arch("convnet", input_shape=[64], batchnorm=True), convnet, [64], True
    yield "ResNet-20, inner convs", _arch("resnet20"), inner, [16, 16], True
    yield "cat + mean((2, 3))", CatNet(), ["a", "b", "c"], [16, 16], True
    yield "expand -> depthwise -> project", DepthwiseNet(), ["expand", "project"], [16, 16], True
    yield "ResNet-20, block conv2 (padded shortcut)", _arch("resnet20"), ["layer2.0.conv2"], [16, 16], False
    yield "grouped conv, one group's filters", GroupedNet(), ["g"], [16, 16], False


def trained_like(model: nn.Module, x: torch.Tensor) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        model.train()
        for _ in range(3):
            model(x * 2 + 0.5)
    return model.eval()


def torch_pruning(model: nn.Module, x: torch.Tensor, drops: dict[str, torch.Tensor]) -> nn.Module:
    model = copy.deepcopy(model)
    for name, idx in drops.items():
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
        group = graph.get_pruning_group(model.get_submodule(name), tp.prune_conv_out_channels, idxs=idx.tolist())
        group.prune()
    return model.eval()


def main() -> None:
    torch.set_num_threads(1)
    print(f"`python {' '.join(sys.argv)}` - torch {torch.__version__}, torch-pruning {tp.__version__}, ")
    print(f"{platform.python_implementation()} {platform.python_version()}, {platform.machine()}\n")
    print("| model | dropped | params full | orthocli compact | Torch-Pruning | orthocli vs masked | TP vs masked |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for title, model, names, shape, _ in cases():
        x = torch.randn(8, 3, *shape, generator=torch.Generator().manual_seed(1))
        if title.startswith("grouped"):  # 3 of the 4 filters of the first group
            drops = {"g": torch.tensor([0, 1, 2])}
        else:
            drops = _every_third(model, names)
        model = trained_like(model, x)
        state = model.state_dict()
        apply_drops(state, make_record(state, banks_from_model(model), drops, {}))
        with torch.no_grad():
            want = masked_model(model, drops)(x)
            try:
                small, report = compacted(model, drops, x)
                ours = f"{param_count(small):,}" + (" (kept width)" if report.kept_width else "")
                ours_diff = f"{(small(x) - want).abs().max():.1e}"
            except CheckpointError as e:
                ours, ours_diff = "refused", str(e).split(";")[0][-60:]
        try:  # outside no_grad: Torch-Pruning traces the autograd graph
            theirs = torch_pruning(model, x, drops)
            with torch.no_grad():
                tp_params, tp_diff = f"{param_count(theirs):,}", f"{(theirs(x) - want).abs().max():.1e}"
        except Exception as e:
            tp_params, tp_diff = "error", type(e).__name__
        dropped = sum(len(i) for i in drops.values())
        print(f"| {title} | {dropped} | {param_count(model):,} | {ours} | {tp_params} | {ours_diff} | {tp_diff} |")


if __name__ == "__main__":
    main()
