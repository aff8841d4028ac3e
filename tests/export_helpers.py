"""The models, architectures and pruned checkpoints the `orthocli export` tests share. The user
architectures are rebuilt through {"name": "callable", "target": "export_helpers:make_user_net"}."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import orthocli.checkpoints.checkpoint as checkpoint
from orthocli.export.pipeline import probe_batch
from orthocli.method.subnet import apply_drops, make_record
from orthocli.network.banks import banks_from_model
from orthocli.network.models import build_model


class UserNet(nn.Module):
    """conv -> bn -> relu -> conv -> relu -> flatten (view) -> linear."""

    def __init__(self, in_channels: int = 1, num_classes: int = 4, input_shape=(6, 6), width: int = 6) -> None:
        super().__init__()
        h, w = input_shape
        self.c1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU()
        self.c2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.fc(x.view(x.size(0), -1))


def make_user_net(**kwargs) -> nn.Module:
    return UserNet(**kwargs)


class DepthwiseNet(nn.Module):
    def __init__(self, **_) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.dw(torch.relu(self.c1(x))), 1))


def make_depthwise_net(**kwargs) -> nn.Module:
    return DepthwiseNet(**kwargs)


class SigmoidResidualNet(nn.Module):
    """c1 -> sigmoid -> (c2(.) + .) -> flatten -> fc: c1 feeds a residual add through sigmoid."""

    def __init__(self, **_) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = torch.sigmoid(self.c1(x))
        return self.fc(torch.flatten(self.c2(x) + x, 1))


def make_sigmoid_residual_net(**kwargs) -> nn.Module:
    return SigmoidResidualNet(**kwargs)


USER_ARCH = {
    "name": "callable",
    "target": "export_helpers:make_user_net",
    "args": {"in_channels": 1, "num_classes": 4, "input_shape": [6, 6], "width": 6},
}
DW_ARCH = {
    "name": "callable",
    "target": "export_helpers:make_depthwise_net",
    "args": {"in_channels": 1, "num_classes": 3, "input_shape": [6, 6]},
}
SIGRES_ARCH = {
    "name": "callable",
    "target": "export_helpers:make_sigmoid_residual_net",
    "args": {"in_channels": 1, "num_classes": 3, "input_shape": [6, 6]},
}


def convnet_arch(**over) -> dict:
    args = {"in_channels": 1, "num_classes": 10, "input_shape": [8, 8], "width": 8, "batchnorm": True}
    return {"name": "convnet", "args": {**args, **over}}


RESNET_ARCH = {"name": "resnet20", "args": {"in_channels": 1, "num_classes": 10, "input_shape": [8, 8], "width": 4}}


def trained_like(arch: dict, seed: int = 0) -> nn.Module:
    """A model with non-trivial BatchNorm statistics and affine parameters and non-zero biases."""
    torch.manual_seed(seed)
    model = build_model(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.3, 0.3)
        model.train()
        shape = [arch["args"]["in_channels"], *arch["args"]["input_shape"]]
        for _ in range(3):
            model(torch.randn(16, *shape) * 2 + 0.5)
    return model.eval()


def prune(model: nn.Module, drops: dict[str, list[int]]) -> tuple[dict, dict]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    record = make_record(state, banks_from_model(model), {k: torch.tensor(v) for k, v in drops.items()}, {"ratio": 0.3})
    apply_drops(state, record)
    model.load_state_dict(state)
    return state, record


def save_pruned(path: Path, arch: dict, drops: dict[str, list[int]], seed: int = 0) -> Path:
    model = trained_like(arch, seed)
    state, record = prune(model, drops)
    data = {"mean": [0.5], "std": [0.25], "source": "test"}
    checkpoint.save(path, checkpoint.make_payload(state, arch=arch, data=data, prune=record))
    return path


CONVNET_DROPS = {"features.conv1": [1, 3], "features.conv2": [0, 5, 7], "features.conv3": [2]}


def probe_for(arch: dict) -> torch.Tensor:
    return probe_batch([arch["args"]["in_channels"], *arch["args"]["input_shape"]])
