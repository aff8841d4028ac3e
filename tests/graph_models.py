"""Small models of the graph kinds users train: a residual block, a concatenation, a depthwise
separable block (pointwise -> depthwise -> pointwise) and a grouped reader. `--arch
graph_models:build` builds them in the CLI (the tests' folder is on the import path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """conv1 -> bn1 -> relu, then a block conv2 -> bn2 -> relu -> conv3 -> bn3 added to its input."""

    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn3(self.conv3(F.relu(self.bn2(self.conv2(h))))) + h)
        return self.fc(h.mean((2, 3)))


class Concat(nn.Module):
    """Two branches concatenated along the channels, read by one conv."""

    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.a, self.b = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width // 2, 3, padding=1)
        self.c = nn.Conv2d(width + width // 2, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = torch.cat([F.relu(self.a(h)), F.relu(self.b(h))], dim=1)
        return self.fc(F.relu(self.c(h)).mean((2, 3)))


class Separable(nn.Module):
    """pointwise -> BN -> ReLU -> depthwise -> BN -> ReLU -> pointwise, after a stem."""

    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.pw1, self.bn1 = nn.Conv2d(width, width, 1), nn.BatchNorm2d(width)
        self.dw, self.bn2 = nn.Conv2d(width, width, 3, padding=1, groups=width), nn.BatchNorm2d(width)
        self.pw2 = nn.Conv2d(width, width, 1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(self.bn2(self.dw(F.relu(self.bn1(self.pw1(h))))))
        return self.fc(F.relu(self.pw2(h)).mean((2, 3)))


class Grouped(nn.Module):
    """A conv read by a grouped conv (groups=2)."""

    def __init__(self, in_channels, num_classes, width=8):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.a = nn.Conv2d(width, width, 3, padding=1)
        self.g = nn.Conv2d(width, width, 3, padding=1, groups=2)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        h = F.relu(self.a(F.relu(self.stem(x))))
        return self.fc(F.relu(self.g(h)).mean((2, 3)))


KINDS = {"residual": Residual, "concat": Concat, "separable": Separable, "grouped": Grouped}


def build(in_channels, num_classes, input_shape, kind="separable", width=8):
    return KINDS[kind](in_channels, num_classes, width)


def make(kind: str, seed: int = 0, width: int = 8) -> nn.Module:
    """A model of `kind` with BatchNorm statistics and affine parameters as after training."""
    torch.manual_seed(seed)
    model = KINDS[kind](1, 3, width)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model.eval()
