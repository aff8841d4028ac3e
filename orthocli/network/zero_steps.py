"""What a step of the forward pass does to a channel, decided by what it does, not by its name:
whether it acts on each channel by itself (`per_channel`) and whether it maps an all-zero channel
to zero (`keeps_zero`). The known steps are listed; any other parameter-free one is run on small
inputs. Filter banks (banks.py), the walk to a channel's readers (channel_readers.py) and the masks
(method/masking.py) all ask it."""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import fx, nn

PER_CHANNEL_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.SELU,
    nn.CELU,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Tanhshrink,
    nn.Softshrink,
    nn.Hardshrink,
    nn.Mish,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
PER_CHANNEL_FUNCTIONS = {
    torch.relu,
    F.relu,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.gelu,
    F.silu,
    F.leaky_relu,
    F.elu,
    F.relu6,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    F.softplus,
    F.mish,
    F.selu,
    F.celu,
    F.dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
}
PER_CHANNEL_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}

# What an operation not in the lists above does is found by running it (`_probe`) on small random
# inputs: per channel when channel c of its output depends on channel c of its input only, and
# whether it maps an all-zero input to zero. Only parameter-free modules and calls whose other
# arguments are constants are run; anything else is taken as mixing channels.
_REDUCTIONS = {"mean", "sum", "amax", "amin", torch.mean, torch.sum, torch.amax, torch.amin}
_PROBE_SHAPES = ((2, 3, 5, 5), (2, 3, 7), (2, 3, 4, 4, 4))
_probed_modules: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_probed_calls: dict = {}


def _probe(fn) -> tuple[bool, bool]:
    """(per channel, maps zero to zero) for a function of one tensor; (False, False) where it
    fails on every probe shape or returns something else."""
    for shape in _PROBE_SHAPES:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=gen)
        other = x.clone()
        other[:, 1] = torch.randn(other[:, 1].shape, generator=gen)
        try:
            out, again, moved, zero = (_seeded(fn, t) for t in (x.clone(), x.clone(), other, torch.zeros(shape)))
        except Exception:  # not for this spatial rank, or not a tensor function at all
            continue
        if not all(isinstance(t, torch.Tensor) and t.shape == out.shape for t in (out, again, moved, zero)):
            return False, False
        if out.dim() != x.dim() or out.shape[:2] != x.shape[:2] or not torch.equal(out, again):
            return False, False
        per_channel = torch.equal(out[:, [0, 2]], moved[:, [0, 2]])
        return per_channel, per_channel and bool((zero == 0).all())
    return False, False


def _seeded(fn, x: torch.Tensor):
    """fn(x) with the same random numbers every call (a dropout in training mode drops the same
    elements), leaving the global random state as it was: probing changes no seeded run."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        return fn(x)


def _probed(node, modules: dict[str, nn.Module]) -> tuple[bool, bool]:
    """`_probe` of what `node` does to its first argument, cached; (False, False) where it takes
    another tensor or holds parameters or buffers (its values would decide)."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False, False
    others: list = []
    fx.node.map_arg((node.args[1:], node.kwargs), others.append)
    if others:
        return False, False
    rest, kwargs = node.args[1:], dict(node.kwargs)
    if node.op == "call_module":
        mod = modules.get(node.target)
        if mod is None or rest or kwargs or next(iter(mod.parameters()), None) is not None:
            return False, False
        if next(iter(mod.buffers()), None) is not None:
            return False, False
        if mod not in _probed_modules:
            _probed_modules[mod] = _probe(mod)
        return _probed_modules[mod]
    if node.op == "call_function":
        fn = lambda x: node.target(x, *rest, **kwargs)  # noqa: E731
    elif node.op == "call_method":
        fn = lambda x: getattr(x, node.target)(*rest, **kwargs)  # noqa: E731
    else:
        return False, False
    try:
        key = (node.op, node.target, repr(rest), repr(kwargs))
    except Exception:  # an argument without a repr: probe every time
        return _probe(fn)
    if key not in _probed_calls:
        _probed_calls[key] = _probe(fn)
    return _probed_calls[key]


def per_channel(node, modules: dict[str, nn.Module]) -> bool:
    """Whether `node` acts on each channel of its first argument by itself (an activation,
    pooling, dropout: the listed ones, or any such step found by running it). BatchNorm and PReLU,
    which hold per-channel tensors, are their callers' to handle."""
    if node.op == "call_module" and isinstance(modules.get(node.target), PER_CHANNEL_MODULES):
        return True
    if node.op == "call_function" and node.target in PER_CHANNEL_FUNCTIONS:
        return True
    if node.op == "call_method" and node.target in PER_CHANNEL_METHODS:
        return True
    if node.target in _REDUCTIONS:  # per channel too, but followed as a reduction (channel_readers.py)
        return False
    return _probed(node, modules)[0]


def keeps_zero(node, modules: dict[str, nn.Module]) -> bool:
    """Whether this per-channel step maps a dropped (all-zero) channel to zero, decided by what it
    does to zero, not by its name: a BatchNorm by its affine parameters (zero for a dropped
    filter; without them (0 - mean) / std != 0), a PReLU always, anything else by running it on
    zeros (a sigmoid and a hard sigmoid give 0.5, a softplus log 2)."""
    mod = modules.get(node.target) if node.op == "call_module" else None
    if isinstance(mod, nn.modules.batchnorm._BatchNorm):
        return mod.affine
    if isinstance(mod, nn.PReLU):
        return True
    return _probed(node, modules)[1]
