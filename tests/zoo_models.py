"""torchvision's classification families, built small (few channels where a width multiplier
exists, small inputs) for tests/test_torchvision_zoo.py.

torchvision is a test-only dependency (the test extra). On a CPU build of torch, the torchvision
wheel built for CUDA fails to load its C extension, and its import then fails on two undefined
detection ops; defining their schemas first is enough for the classification models, which call
no detection op. This is a test helper, never runtime code.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn


def import_torchvision():
    """torchvision, or a skip with the reason (a failure under CI=1, where it must be installed)."""
    try:
        import torchvision
    except ModuleNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("torchvision is not installed (pip install -e '.[test]' installs it)")
    except Exception:  # the CUDA wheel on a CPU torch: its ops are undefined, define the two it needs
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_torchvision.lib = lib  # keep the definitions alive
        import torchvision
    return torchvision


def _vgg_bn(tv):
    # VGG-11 with BatchNorm, its classifier made small (25088 x 4096 would dominate the test's time)
    model = tv.models.vgg11_bn(num_classes=10)
    model.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(), nn.Linear(32, 10))
    return model


def _densenet(tv):
    return tv.models.DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2, num_classes=10)


def _convnext(tv):
    from torchvision.models.convnext import CNBlockConfig

    return tv.models.ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


def _resnet(tv):
    from torchvision.models.resnet import BasicBlock

    return tv.models.ResNet(BasicBlock, [1, 1, 1, 1], num_classes=10)


def _resnext(tv):
    from torchvision.models.resnet import Bottleneck

    return tv.models.ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=8, num_classes=10)


def _wide_resnet(tv):
    from torchvision.models.resnet import Bottleneck

    return tv.models.ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=32, num_classes=10)


# family -> (builder of torchvision, input size)
FAMILIES = {
    "resnet": (_resnet, 32),
    "resnext": (_resnext, 32),
    "wide_resnet": (_wide_resnet, 32),
    "vgg_bn": (_vgg_bn, 32),
    "mobilenet_v2": (lambda tv: tv.models.mobilenet_v2(width_mult=0.25, num_classes=10), 32),
    "mobilenet_v3": (lambda tv: tv.models.mobilenet_v3_small(width_mult=0.25, num_classes=10), 32),
    "efficientnet": (lambda tv: tv.models.efficientnet_b0(num_classes=10), 32),
    "efficientnet_v2": (lambda tv: tv.models.efficientnet_v2_s(num_classes=10), 32),
    "mnasnet": (lambda tv: tv.models.mnasnet0_5(num_classes=10), 32),
    "densenet": (_densenet, 32),
    "shufflenet_v2": (lambda tv: tv.models.shufflenet_v2_x0_5(num_classes=10), 32),
    "regnet_x": (lambda tv: tv.models.regnet_x_400mf(num_classes=10), 32),
    "regnet_y": (lambda tv: tv.models.regnet_y_400mf(num_classes=10), 32),
    "convnext": (_convnext, 32),
    "squeezenet": (lambda tv: tv.models.squeezenet1_1(num_classes=10), 32),
    "googlenet": (lambda tv: tv.models.googlenet(num_classes=10, aux_logits=False, init_weights=False), 32),
    "inception_v3": (lambda tv: tv.models.inception_v3(num_classes=10, aux_logits=False, init_weights=False), 75),
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
