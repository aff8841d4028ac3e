"""Helpers for the tests that train tiny models, through the library and through the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from orthocli import seeding
from orthocli.network.models import ConvNet, arch_spec, build_model, init_weights

# One RePr cycle of `orthocli train`, 1 + 1 epochs, then one standard epoch.
ONE_CYCLE = ["--s1", "1", "--s2", "1", "--cycles", "1", "--max-epochs", "3"]
# `orthocli train` at its smallest: 120 digits, 4 filters per layer, one cycle (a later --data wins).
TINY = ["--data", "digits", "--max-samples", "120", "--width", "4", *ONE_CYCLE, "--batch-size", "32"]

FAST = dict(s1=1, s2=1, cycles=1, patience=100, batch_size=32)  # one short cycle


def convnet(data, seed=0, **options):
    seeding.set_seed(seed)
    arch = arch_spec(
        "convnet",
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        input_shape=list(data.spatial_shape),
        **{"width": 6, **options},
    )
    model = build_model(arch)
    init_weights(model, options.get("activation", "relu"))
    return model


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def clone_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- the controller tests' model, data and loop (orthocli.RePr in a user's own loop)


def make_model(seed: int = 0, activation: str = "relu") -> nn.Module:
    torch.manual_seed(seed)
    return ConvNet(1, 4, [8, 8], width=8, depth=3, activation=activation, batchnorm=True)


def make_data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def make_optimizer(model: nn.Module, name: str = "sgd") -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)


def run_epoch(model, optimizer, data, batch: int = 16) -> None:
    model.train()
    x, y = data
    for i in range(0, len(x), batch):
        loss = F.cross_entropy(model(x[i : i + batch]), y[i : i + batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def frozen_values(model, record) -> dict[str, torch.Tensor]:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    return {
        ch["key"]: tensors[ch["key"]].detach().index_select(ch["dim"], layer["dropped"]).clone()
        for layer in record["layers"].values()
        for ch in layer["channels"]
    }


# The ConvNet's convs that the default rule may drop from (the first is skipped).
CANDIDATE_CONVS = ("features.conv2.weight", "features.conv3.weight")


def rewrite_convs(src: Path, dst: Path, shape: Callable[[torch.Tensor], None]) -> Path:
    """Copy the orthocli checkpoint `src` to `dst` with its ConvNet's candidate conv weights rewritten,
    in place, by `shape` (`orthogonal`, `near_copies`): how redundant they are is then known."""
    payload = torch.load(src, weights_only=True)
    for key in CANDIDATE_CONVS:
        shape(payload["state_dict"][key])
    torch.save(payload, dst)
    return dst


def orthogonal(w: torch.Tensor) -> None:
    """Filters at right angles: less redundant than random ones."""
    q, _ = torch.linalg.qr(torch.randn(w[0].numel(), w.shape[0], generator=torch.Generator().manual_seed(0)))
    w.copy_(q.T.reshape(w.shape))


def near_copies(w: torch.Tensor) -> None:
    """Every filter close to the first: far more redundant than random ones."""
    noise = torch.randn(w[1:].shape, generator=torch.Generator().manual_seed(0))
    w[1:] = w[0] + 0.3 * noise * w[0].abs().mean()
