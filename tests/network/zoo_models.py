"""torchvision's classification families, built small (few channels where a width multiplier
exists, small inputs) for tests/test_torchvision_zoo.py.

torchvision is a test-only dependency (the test extra); tests/conftest.py makes a CUDA build of
it importable on a CPU torch.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn


def import_torchvision():
    """torchvision (made importable on a CPU torch by tests/conftest.py), or a skip with the
    reason; under CI=1, where the test extra installs it, its absence is a failure."""
    try:
        import torchvision
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("torchvision is not installed (pip install -e '.[test]' installs it)")
    return torchvision


def _vgg_bn(tv):
    # VGG's conv -> BatchNorm -> ReLU stacks and max pools, few channels; its flatten into the classifier
    from torchvision.models.vgg import make_layers

    model = tv.models.VGG(make_layers([8, "M", 16, "M", 32, 32, "M"], batch_norm=True), num_classes=10)
    model.classifier = nn.Sequential(nn.Linear(32 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))
    return model


def _two_stages(model: nn.Module, width: int) -> nn.Module:
    # a ResNet's first two stages (the blocks of every stage are alike): layer3 and layer4 left out
    model.layer3, model.layer4 = nn.Identity(), nn.Identity()
    model.fc = nn.Linear(width, 10)
    return model


def _resnet(tv):
    from torchvision.models.resnet import BasicBlock

    return _two_stages(tv.models.ResNet(BasicBlock, [2, 1, 1, 1]), 128)


def _resnext(tv):
    from torchvision.models.resnet import Bottleneck

    return _two_stages(tv.models.ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=8), 512)


def _wide_resnet(tv):
    from torchvision.models.resnet import Bottleneck

    return _two_stages(tv.models.ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=128), 512)


def _efficientnet(tv):
    from torchvision.models.efficientnet import MBConvConfig

    blocks = [MBConvConfig(1, 3, 1, 16, 8, 1), MBConvConfig(6, 3, 2, 8, 16, 2), MBConvConfig(6, 5, 2, 16, 24, 1)]
    return tv.models.EfficientNet(blocks, dropout=0.2, num_classes=10, last_channel=64)


def _efficientnet_v2(tv):
    from functools import partial

    from torchvision.models.efficientnet import FusedMBConvConfig, MBConvConfig

    blocks = [
        FusedMBConvConfig(1, 3, 1, 16, 16, 1),
        FusedMBConvConfig(4, 3, 2, 16, 24, 2),
        MBConvConfig(4, 3, 2, 24, 32, 2),
    ]
    norm = partial(nn.BatchNorm2d, eps=1e-03)
    return tv.models.EfficientNet(blocks, dropout=0.2, num_classes=10, norm_layer=norm, last_channel=64)


def _regnet(tv, se_ratio):
    from torchvision.models.regnet import BlockParams

    params = BlockParams.from_init_params(depth=4, w_0=16, w_a=8.0, w_m=2.0, group_width=8, se_ratio=se_ratio)
    return tv.models.RegNet(params, num_classes=10)


def _densenet(tv):
    return tv.models.DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2, num_classes=10)


def _convnext(tv):
    from torchvision.models.convnext import CNBlockConfig

    return tv.models.ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


# family -> (builder of torchvision, input size). Inception v3 is left out: it needs 75x75 inputs and
# 24M parameters (half a minute here); GoogLeNet has its inception blocks (concatenated branches).
FAMILIES = {
    "resnet": (_resnet, 32),
    "resnext": (_resnext, 32),
    "wide_resnet": (_wide_resnet, 32),
    "vgg_bn": (_vgg_bn, 32),
    "mobilenet_v2": (lambda tv: tv.models.mobilenet_v2(width_mult=0.25, num_classes=10), 32),
    "mobilenet_v3": (lambda tv: tv.models.mobilenet_v3_small(width_mult=0.25, num_classes=10), 32),
    "efficientnet": (_efficientnet, 32),
    "efficientnet_v2": (_efficientnet_v2, 32),
    "mnasnet": (lambda tv: tv.models.MNASNet(0.25, num_classes=10), 32),
    "densenet": (_densenet, 32),
    "shufflenet_v2": (lambda tv: tv.models.shufflenet_v2_x0_5(num_classes=10), 32),
    "regnet_x": (lambda tv: _regnet(tv, None), 32),
    "regnet_y": (lambda tv: _regnet(tv, 0.25), 32),
    "convnext": (_convnext, 32),
    "squeezenet": (lambda tv: tv.models.squeezenet1_1(num_classes=10), 32),
    "googlenet": (lambda tv: tv.models.googlenet(num_classes=10, aux_logits=False, init_weights=False), 32),
}


def build(family: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The family's model, with non-trivial biases and BatchNorm statistics (a leak through a
    dropped filter shows), in eval mode, and a batch of two inputs."""
    tv = import_torchvision()
    make, size = FAMILIES[family]
    torch.manual_seed(seed)
    model = make(tv)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.3, 0.3)
        model.train()
        model(x * 2 + 0.5)
    return model.eval(), x
