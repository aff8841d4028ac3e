"""Architectures rebuilt from the arguments recorded in a checkpoint (model initialisation: the
patent's claims 2-3, docs/method.md).

An architecture is a plain dict, saved with the weights: {"name": "convnet", "args": {...}},
{"name": "resnet20", "args": {...}}, or {"name": "callable", "target": "pkg.mod:fn", "args": {...}}
for a user's own model. `build_model(arch)` turns it back into an nn.Module.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
from collections import OrderedDict

import torch
from torch import nn

from orthocli.errors import CheckpointError, OrthoError, UsageError, first_line

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,  # the patent's embodiment (claim 3)
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
BUILTIN = ("convnet", "resnet20")


def _conv(dims: int):
    return {1: nn.Conv1d, 2: nn.Conv2d}[dims]


def _bn(dims: int):
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise UsageError(f"unknown activation '{name}'; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class ConvNet(nn.Module):
    """The paper's plain ConvNet: `depth` blocks of conv -> [BatchNorm] -> activation -> pool,
    then one Linear classifier on the flattened features. Conv1d or Conv2d by `len(input_shape)`.
    Pooling halves each spatial size while it is at least 2, so small inputs (8x8 digits) work."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_shape: list[int],
        width: int = 32,
        depth: int = 3,
        kernel: int = 3,
        pool: str = "max",
        activation: str = "relu",
        batchnorm: bool = False,
    ) -> None:
        super().__init__()
        dims = len(input_shape)
        if dims not in (1, 2):
            raise UsageError(f"convnet takes 1-D or 2-D inputs, got spatial shape {input_shape}")
        if pool not in ("max", "avg", "none"):
            raise UsageError(f"pool must be 'max', 'avg' or 'none', got '{pool}'")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        size, channels = list(input_shape), in_channels
        for i in range(1, depth + 1):
            layers[f"conv{i}"] = _conv(dims)(channels, width, kernel, padding=kernel // 2)
            if batchnorm:
                layers[f"bn{i}"] = _bn(dims)(width)
            layers[f"act{i}"] = _activation(activation)
            if pool != "none" and min(size) >= 2:
                pool_cls = {"max": (nn.MaxPool1d, nn.MaxPool2d), "avg": (nn.AvgPool1d, nn.AvgPool2d)}[pool][dims - 1]
                layers[f"pool{i}"] = pool_cls(2)
                size = [s // 2 for s in size]
            channels = width
        self.features = nn.Sequential(layers)
        self.classifier = nn.Linear(channels * math.prod(size), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """ResNet basic block with the parameter-free shortcut of the CIFAR ResNets (option A:
    subsample and zero-pad channels), so every conv of the network is a scored filter bank."""

    def __init__(self, dims: int, cin: int, cout: int, stride: int, activation: str) -> None:
        super().__init__()
        conv, bn = _conv(dims), _bn(dims)
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(cout)
        self.act1 = _activation(activation)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=False)
        self.bn2 = bn(cout)
        self.act2 = _activation(activation)
        self.dims, self.stride, self.pad = dims, stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        short = x
        if self.stride != 1 or self.pad:
            short = x[(..., *([slice(None, None, self.stride)] * self.dims))]
            short = nn.functional.pad(short, [0, 0] * self.dims + [self.pad // 2, self.pad - self.pad // 2])
        return self.act2(out + short)


class ResNet20(nn.Module):
    """CIFAR-style ResNet-20 (He et al. 2016): a stem conv, three stages of `blocks` basic blocks
    with widths w, 2w, 4w, global average pooling, a Linear classifier."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        input_shape: list[int],
        width: int = 16,
        blocks: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        dims = len(input_shape)
        if dims not in (1, 2):
            raise UsageError(f"resnet20 takes 1-D or 2-D inputs, got spatial shape {input_shape}")
        self.conv1 = _conv(dims)(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = _bn(dims)(width)
        self.act1 = _activation(activation)
        stages, cin = [], width
        for s, w in enumerate((width, 2 * width, 4 * width)):
            stage = [
                BasicBlock(dims, cin if b == 0 else w, w, 2 if (s and b == 0) else 1, activation) for b in range(blocks)
            ]
            stages.append(nn.Sequential(*stage))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = (nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d)(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def init_weights(model: nn.Module, activation: str) -> None:
    """He (Kaiming) normal for ReLU-like activations, Xavier (Glorot) normal for sigmoid and tanh;
    biases zero; BatchNorm weight 1, bias 0. Uses the global RNG: seed first (`set_seed`)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            if activation in ("sigmoid", "tanh"):
                nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain(activation))
            else:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


DATA_ARGS = ("in_channels", "num_classes", "input_shape")  # what the data says, given to parameters so named


def _import_builder(target: str, error: type[Exception] = UsageError):
    """The callable `target` ('package.module:callable') names; `error` when it cannot be had."""
    if ":" not in target:
        raise error(f"--arch '{target}': expected 'package.module:callable'")
    mod_name, _, attr = target.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except Exception as e:  # an import runs the package's code, which can raise anything
        raise error(
            f"--arch '{target}': cannot import it ({type(e).__name__}: {first_line(e)}); is the package installed"
            " (and importable on this machine) or on PYTHONPATH?"
        ) from None
    if not callable(fn):
        raise error(f"--arch '{target}' is a {type(fn).__name__}, not a callable")
    return fn


def _parameters(fn) -> tuple[set[str], bool]:
    """The keyword parameters `fn` names, and whether it also takes **kwargs."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: give it only what the user asks
        return set(), True
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params.values())


def _call_user(target: str, args: dict, error: type[Exception] = UsageError) -> nn.Module:
    fn = _import_builder(target, error)
    named, accepts_any = _parameters(fn)
    # records written before the builder's arguments were chosen at `arch_spec` carry every data
    # argument: a builder gets those it names (and all of them through **kwargs, as it did then)
    given = {k: v for k, v in args.items() if accepts_any or k in named}
    try:
        model = fn(**given)
    except OrthoError:
        raise
    except Exception as e:  # the builder's own refusal (TypeError: an argument it does not take)
        shown = ", ".join(f"{k}={v!r}" for k, v in given.items()) or "no arguments"
        if error is UsageError:
            raise error(
                f"--arch '{target}' failed when called with {shown}: {type(e).__name__}: {first_line(e)}; give"
                " the arguments it takes with --arch-args KEY=VALUE"
            ) from None
        raise error(
            f"the recorded architecture '{target}' failed when called with the recorded {shown}:"
            f" {type(e).__name__}: {first_line(e)}; does the installed package still take them?"
        ) from None
    if not isinstance(model, nn.Module):
        raise error(f"--arch '{target}' returned a {type(model).__name__}, not an nn.Module")
    return model


def build_model(arch: dict, *, error: type[Exception] = UsageError) -> nn.Module:
    """Build the model a recorded architecture dict describes, without weights (a compact export's
    recorded widths: `checkpoints.model.rebuild`). A user's builder that cannot be imported or
    refuses its arguments raises `error`: a UsageError for `--arch`, a CheckpointError for the
    architecture a file records."""
    name, args = arch.get("name"), dict(arch.get("args", {}))
    if name == "convnet":
        return ConvNet(**args)
    if name == "resnet20":
        return ResNet20(**args)
    if name == "callable":
        return _call_user(arch["target"], args, error)
    raise CheckpointError(f"unknown architecture '{name}' recorded in the checkpoint")


def parse_arch_args(items: list[str] | None) -> dict:
    """`--arch-args KEY=VALUE` (repeatable) -> {KEY: VALUE}; each VALUE is read as JSON where it is
    JSON (10, 0.5, true, null, [1, 2], "text"), else kept as text (relu)."""
    out: dict = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"--arch-args '{item}': expected KEY=VALUE, e.g. num_classes=10")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def arch_spec(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    input_shape: list[int],
    arch_args: dict | None = None,
    **options,
) -> dict:
    """The architecture dict for `--arch NAME` and the data's shape. Options not given are left
    to the model's defaults; unknown options are a usage error.

    A user's builder (`package.module:callable`) is called with exactly the recorded `args`: the
    data's `in_channels`, `num_classes`, `input_shape` and the options (`width`, ...) where it names
    a parameter so called, and every `arch_args` entry (the user's `--arch-args`, which win). Its
    `**kwargs` gets nothing else: torchvision's and timm's builders forward them to the model
    class, which would refuse names it does not know. `sample_shape` records one sample's shape
    (C x spatial) for the probe batches of later commands."""
    arch_args = dict(arch_args or {})
    data = {"in_channels": in_channels, "num_classes": num_classes, "input_shape": list(input_shape)}
    if name in BUILTIN:
        cls = {"convnet": ConvNet, "resnet20": ResNet20}[name]
        allowed = set(inspect.signature(cls).parameters)
        given = {**{k: v for k, v in options.items() if v is not None}, **arch_args}
        bad = sorted(k for k in given if k not in allowed)
        if bad:
            raise UsageError(f"--arch {name} does not take {', '.join(bad)}")
        return {"name": name, "args": {**data, **given}}
    if ":" in name:
        named, _ = _parameters(_import_builder(name))
        args = {k: v for k, v in {**data, **options}.items() if v is not None and k in named}
        args.update(arch_args)
        return {"name": "callable", "target": name, "args": args, "sample_shape": [in_channels, *input_shape]}
    raise UsageError(f"unknown architecture '{name}'; choose {', '.join(BUILTIN)} or give 'package.module:callable'")


def sample_shape(arch: dict | None) -> list[int] | None:
    """One sample's shape (C x spatial) an architecture dict records, or None."""
    arch = arch or {}
    if isinstance(arch.get("sample_shape"), list):
        return [int(n) for n in arch["sample_shape"]]
    args = arch.get("args", {})
    if isinstance(args.get("in_channels"), int) and isinstance(args.get("input_shape"), list):
        return [int(args["in_channels"]), *map(int, args["input_shape"])]
    return None
